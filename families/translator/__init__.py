"""The translator family (book ch. 16): dates -> ISO, and English -> Spanish Bible verses.

data.py ingests and prepares (splits incl. en-es's held-out books, codecs); models.py holds the
modules and the zoo; decode.py greedy and beam search and the batched `translate_ids`; train.py
the batches, loss, validation and per-step learning rate of the shared supervised loop;
metrics.py the decoding and scores both validation and evaluation use; evaluate.py the evaluate
stage; serve.py the translate route and its Predictor.
"""

from components.family import Family, Route
from families.translator import data, evaluate, models, serve, train
from families.translator.metrics import METRICS

FAMILY = Family(
    name="translator",
    tasks=("dates", "en-es"),
    ingest=data.ingest,
    prepare=data.prepare,
    models=models.MODELS,
    loop=train.loop,
    evaluate=evaluate.evaluate,
    predictor=serve.Predictor,
    metrics=METRICS,
    routes=(Route("translate", serve.TranslateRequest, serve.TranslateResponse, method="translate_batch"),),
    input_example=serve.input_example,
    # The test pairs' text and ids are in test.parquet's bytes; these say how they were cut and
    # encoded, and the decode length limit (max_tgt_len) the test metric was measured under.
    test_set_keys=("codec", "tokenizer", "max_words", "src_vocab", "tgt_vocab", "max_src_len", "max_tgt_len"),
)
