"""Replay: the components an off-policy algorithm picks (DQN today), kept out of ``agents/runtime/``, which is the
loop, the actors, Ray and the seam only.

- :mod:`agents.replay.buffer`: uniform and prioritised replay that stores each frame once;
- :mod:`agents.replay.nstep`: the n-step adder that turns vector-env steps into transition chunks;
- :mod:`agents.replay.sum_tree`: the sum tree that prioritised sampling draws from.
"""
