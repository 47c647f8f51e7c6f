"""The translator family (book ch. 16): dates -> ISO, English -> Spanish Bible verses, and the
char-RNN language model of the English text (`web-chars`, chars.py on charrnn.py).

data.py ingests and prepares (splits incl. en-es's held-out books, codecs); models.py holds the
modules and the zoo; decode.py greedy and beam search and the batched `translate_ids`; train.py
the batches, loss, validation and per-step learning rate of the shared supervised loop;
metrics.py the decoding and scores both validation and evaluation use; evaluate.py the evaluate
stage; serve.py the translate and generate routes and their Predictor. reber.py holds the
book's Reber-grammar exercise (bench only).
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
