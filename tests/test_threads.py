"""OpenMP's wait policy: passive unless the user set one (see lee/__init__.py for the measurement)."""

from __future__ import annotations

import os
import subprocess
import sys


def _policy_seen_by_torch(env: dict[str, str]) -> str:
    code = ("import lee, torch, os; torch.set_num_threads(2); torch.ones(64, 64) @ torch.ones(64, 64); "
            "print(os.environ['OMP_WAIT_POLICY'])")
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True).stdout.strip()


def test_importing_lee_makes_openmp_threads_wait_passively_unless_the_user_chose():
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    assert _policy_seen_by_torch(env) == "PASSIVE"
    assert _policy_seen_by_torch({**env, "OMP_WAIT_POLICY": "ACTIVE"}) == "ACTIVE"
