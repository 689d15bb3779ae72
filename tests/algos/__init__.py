"""Test-only algorithms that prove the runtime seam (``agents.runtime.algorithm``) carries more than DQN."""
