"""`--strategy multiworker` for real: two `mask2face train` processes on localhost (TF_CONFIG, gRPC), the
adversarial term on, killed after a mid-epoch checkpoint and started again. Both finish, only the chief writes,
and the second start resumes from the chief's checkpoint (docs: README, "Training on a cluster")."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from test_fit import make_fake_pairs

EPOCHS, STEPS_PER_EPOCH = 6, 16   # 64 training pairs, global batch 4


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _workers(tmp_path, ports) -> list[tuple[list[str], dict]]:
    cluster = {"worker": [f"localhost:{p}" for p in ports]}
    out = []
    for index in range(len(ports)):
        # Each worker has a run folder of its own; checkpoints go to one shared folder (a cluster's shared disk).
        cmd = [sys.executable, "-m", "mask2face.cli", "train", "--preset", "smoke", "--run", str(tmp_path / f"run{index}"),
               "--data", str(tmp_path / "data"), "--out", str(tmp_path / "shared"), "--strategy", "multiworker",
               "--checkpoint-steps", "3", f"train.epochs={EPOCHS}", "teacher.filters=8,16", "teacher.kernels=3,3",
               "train.adversarial.weight=0.05", "train.adversarial.filters=8,8"]
        env = {**os.environ, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
               "CUDA_VISIBLE_DEVICES": ""}
        out.append((cmd, env))
    return out


def _start(workers, tmp_path, tag):
    return [subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=open(tmp_path / f"{tag}{i}.log", "w"),
                             stderr=subprocess.STDOUT) for i, (cmd, env) in enumerate(workers)]


@pytest.mark.slow
def test_two_workers_train_the_adversarial_loop_only_the_chief_writes_and_a_restart_resumes(tmp_path):
    make_fake_pairs(tmp_path / "data", counts=(("train", 64), ("val", 8), ("test", 8)))
    workers = _workers(tmp_path, _free_ports(2))
    state_path = tmp_path / "shared" / "state.json"
    procs = _start(workers, tmp_path, "first")
    killed_at, deadline = None, time.time() + 300
    while time.time() < deadline and all(p.poll() is None for p in procs):
        try:
            st = json.loads(state_path.read_text())
        except (OSError, ValueError):
            st = None
        if st and st["global_step"] >= STEPS_PER_EPOCH + 3 and st["step_in_epoch"] and not st["finished"]:
            for p in procs:
                p.send_signal(signal.SIGKILL)
            killed_at = st
            break
        time.sleep(0.02)
    for p in procs:
        p.wait(timeout=60)
    logs = "\n".join((tmp_path / f"first{i}.log").read_text()[-1500:] for i in range(2))
    assert killed_at is not None, "training ended before it could be killed:\n" + logs

    procs = _start(workers, tmp_path, "second")
    codes = [p.wait(timeout=600) for p in procs]
    chief_log, worker_log = ((tmp_path / f"second{i}.log").read_text() for i in range(2))
    assert codes == [0, 0], chief_log[-2000:] + worker_log[-2000:]
    assert "2 replica(s)" in chief_log and "resuming from" in chief_log and "resuming from" in worker_log
    final = json.loads(state_path.read_text())
    assert final["finished"] and final["global_step"] == EPOCHS * STEPS_PER_EPOCH
    assert sorted(final["history"], key=int) == [str(i) for i in range(1, EPOCHS + 1)]
    report = json.loads((tmp_path / "shared" / "train_report.json").read_text())
    # tf.distribute.MultiWorkerMirroredStrategy is CollectiveAllReduceStrategy by its class name
    assert report["replicas"] == 2 and report["strategy"] == "CollectiveAllReduceStrategy"
    assert (tmp_path / "shared" / "discriminator.keras").is_file()
    # the chief wrote its run folder; the other worker wrote nothing of its own
    assert (tmp_path / "run0" / "config.json").is_file()
    assert not (tmp_path / "run1").exists()
