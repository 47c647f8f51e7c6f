"""The generative family (book ch. 17): autoencoders, the VAE, the DCGAN and a DDPM on Fashion-MNIST.

Two tasks, two registered models: `fashion-mnist` (a generator: vae, dcgan (optionally the
conditional cGAN) or ddpm (diffusion with classifier-free guidance), tuned and promoted on FID) and `fashion-mnist-autoencoder` (any model that reconstructs, on reconstruction MSE).
POST /generative/reconstruct with task "fashion-mnist" is answered by the autoencoder champion
(Route.task_map).

Modules by stage: data (ingest, prepare), classifier (the FID feature extractor prepare trains),
fid (the distance), models (the zoo), diffusion (the DDPM's schedule, U-Net and samplers), train
(datasets, losses, the loops), evaluate, serve.
"""

from pathlib import Path

from components.family import Family, Metric, Route
from families.generative import data, evaluate, models, serve, train
from families.generative.data import AUTOENCODER_TASK, GENERATOR_TASK

FAMILY = Family(
    name="generative",
    tasks=data.TASKS,
    ingest=data.ingest,
    prepare=data.prepare,
    models=models.MODELS,
    loop=train.loop,
    evaluate=evaluate.evaluate,
    predictor=serve.Predictor,
    metrics={GENERATOR_TASK: Metric("fid", "min"), AUTOENCODER_TASK: Metric("mse", "min")},
    routes=(
        Route("sample", serve.SampleRequest, serve.SampleResponse, method="sample_batch", tasks=(GENERATOR_TASK,)),
        Route("reconstruct", serve.ReconstructRequest, serve.ReconstructResponse, method="reconstruct_batch",
              tasks=(AUTOENCODER_TASK,), task_map={GENERATOR_TASK: AUTOENCODER_TASK}),
    ),
    input_example=serve.input_example,
    # The test split's bytes (and the FID classifier's, named test_fid_classifier.pt) are hashed
    # anyway; these say how they are read: the image shape, the class names, and which features
    # a test FID is measured on.
    test_set_keys=("image_shape", "classes", "fid_features"),
    demo_panel=Path(__file__).with_name("demo.js"),
    intended_use={
        GENERATOR_TASK: "Sampling 28x28 grey-scale Fashion-MNIST-like clothing images (the book's VAE, DCGAN and "
                        "DDPM), of a chosen class when the model is conditional; judged by FID on the features of "
                        "the pipeline's own Fashion-MNIST classifier.",
        AUTOENCODER_TASK: "Reconstructing (compressing and decoding) 28x28 Fashion-MNIST images; judged by "
                          "reconstruction MSE on the test split.",
    },
    limits={
        GENERATOR_TASK: "Ten clothing classes at 28x28 only; this FID is not comparable to published FIDs "
                        "(other feature extractor); samples are not real products.",
        AUTOENCODER_TASK: "Only images like Fashion-MNIST's (28x28, centred, dark background); "
                          "anything else reconstructs badly. Not an anomaly detector as is.",
    },
)
