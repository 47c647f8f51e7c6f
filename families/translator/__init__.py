"""The translator family (book ch. 16): dates -> ISO, English -> Spanish Bible verses, and the
char-RNN language model of the English text (`web-chars`, chars.py on charrnn.py).

data.py ingests and prepares (splits incl. en-es's held-out books, codecs); models.py holds the
modules and the zoo; decode.py greedy and beam search and the batched `translate_ids`; train.py
the batches, loss, validation and per-step learning rate of the shared supervised loop;
metrics.py the decoding and scores both validation and evaluation use; evaluate.py the evaluate
stage; serve.py the translate and generate routes and their Predictor. reber.py holds the
book's Reber-grammar exercise (bench only).
"""

from pathlib import Path

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
    demo_panel=Path(__file__).with_name("demo.js"),
    intended_use={
        "dates": "The book's exercise: rewriting a date written in one of six human formats as ISO 8601 "
                 "(random dates 1000-9999).",
        "en-es": "English -> Spanish translation of Bible-style verse (World English Bible against Reina-Valera "
                 "1909); for study of the sequence-to-sequence models and of beam search.",
        "web-chars": "A character-level language model of the World English Bible's text: continuing a prompt "
                     "one character at a time, scored in bits per character.",
    },
    limits={
        "dates": "Only the six formats it was trained on; no times, time zones or dates outside 1000-9999.",
        "en-es": "Trained on about 12,000 archaic verse pairs of 20 words or fewer: not a general translator; "
                 "modern, long or out-of-domain text comes out poorly, and the output is unreviewed.",
        "web-chars": "Imitates 1900s-style scripture English; generated text is fluent-looking nonsense, "
                     "not facts or quotations.",
    },
)
