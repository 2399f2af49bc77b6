"""The generative matting model side: the model (`model/`), its diffusers pipeline that owns the
saved folder and mattes videos of any length (`pipeline`), training data (`data/`), fine-tuning
(`finetune`), inference (`infer`) and `bench`. It builds on core, clipstore and matting, and
never imports pipelines/."""

from core import stops

stops.starting()   # `python -m` one of this package's apps: a stop while it starts ends it at once
