"""The measurements behind ``reverie bench NAME``, one module a benchmark, kept apart from the command modules of
``launch/``: each compares side by side in one run and prints ratios (``--json`` for machine-readable results).

``throughput`` (our learners against Stable-Baselines3), ``ac`` (A2C/PPO/IMPALA), ``straw``, ``episodic``,
``density``, ``vae``, ``video`` (world models), ``dyna`` (the world-model agent beside DQN, and its Atari costs)
and ``allocator``.
"""
