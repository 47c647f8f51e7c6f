"""The translator family (book ch. 16): dates -> ISO, and English -> Spanish Bible verses.

data.py ingests and prepares (splits, codecs); models.py holds the modules and the zoo; decode.py
greedy and beam search; train.py the batches, loss and validation of the shared supervised loop;
metrics.py the scores both validation and evaluation use; evaluate.py the evaluate stage;
serve.py the translate route and its Predictor.
"""

from components.family import Family, Metric, Route
from families.translator import chars, data, evaluate, models, serve, train
from families.translator.metrics import METRICS

FAMILY = Family(
    name="translator",
    tasks=(*models.TRANSLATION_TASKS, chars.TASK),
    ingest=data.ingest,
    prepare=data.prepare,
    models=models.MODELS,
    loop=train.loop,
    evaluate=evaluate.evaluate,
    predictor=serve.Predictor,
    # web-chars: the char-RNN, tuned and promoted on bits per character (lower is better)
    metrics={**METRICS, chars.TASK: Metric("bpc", "min")},
    routes=(
        Route("translate", serve.TranslateRequest, serve.TranslateResponse, method="translate_batch",
              tasks=models.TRANSLATION_TASKS),
        Route("generate", chars.GenerateRequest, chars.GenerateResponse, method="generate_batch", tasks=(chars.TASK,)),
    ),
    input_example=serve.input_example,
    # The test pairs' text and ids are in test.parquet's bytes; these say how they were cut and
    # encoded, and the decode length limit (max_tgt_len) the test metric was measured under.
    test_set_keys=("codec", "tokenizer", "max_words", "src_vocab", "tgt_vocab", "max_src_len", "max_tgt_len",
                   "chars"),
)
