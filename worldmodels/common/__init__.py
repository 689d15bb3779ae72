"""What every package may use without importing ``agents`` or ``launch``: atomic writes, checkpoints, the run
scaffold, config checks and the learner device."""
