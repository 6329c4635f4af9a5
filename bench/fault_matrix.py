#!/usr/bin/env python3
"""Fault matrix: SIGKILL a random rank at a random moment, then resume.

For each trial: start a training run on a Fashion-MNIST slice under mpirun,
kill one rank (chosen at random) with SIGKILL at a random moment -- or, every
other trial, the moment rank 0 is writing a checkpoint (a checkpoints/*.tmp
file exists, and an older checkpoint is there to fall back on) -- and
measure how long the job takes to end. Then run the same
command with --resume auto and compare every parameter of final.h5 with an
uninterrupted run of the same configuration, byte for byte.

Pass: every job ended within --limit seconds (default 30) of the kill, and
every resumed run is bit-identical to the reference. Prints one line per
trial and a summary; --json FILE writes the same figures.

    python3 bench/fault_matrix.py --ringtrain build/release/ringtrain [--trials 20]
"""
import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

FASHION = "/usr/share/datasets/fashion-mnist"


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ringtrain", required=True)
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--np", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--limit", type=float, default=30.0, help="seconds a job may take to end after the kill")
    ap.add_argument("--rows", type=int, default=6000)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--json", help="also write the figures to this file")
    ap.add_argument("--mpiexec", default=os.environ.get("RINGTRAIN_MPIEXEC", "mpiexec"))
    ap.add_argument("--mpiexec-args", default=os.environ.get("RINGTRAIN_MPIEXEC_ARGS", "--oversubscribe --bind-to none"))
    return ap.parse_args()


def train_cmd(a, run_dir, resume):
    launcher = [a.mpiexec] + a.mpiexec_args.split()
    if os.getuid() == 0 and "--allow-run-as-root" not in launcher:
        launcher.append("--allow-run-as-root")
    return launcher + ["-n", str(a.np), os.path.abspath(a.ringtrain), "train",
                       f"--data.train={FASHION}/train-images-idx3-ubyte.gz", f"--data.max_rows={a.rows}",
                       "--model.hidden=512,256", f"--train.epochs={a.epochs}", "--checkpoint.every_steps=20",
                       "--checkpoint.keep_last=2", "--optim.name=adamw", "--optim.lr=0.001", "--train.shuffle=true",
                       "--model.dropout=0.1", "--run.progress=false", f"--run.dir={run_dir}",
                       f"--resume={'auto' if resume else 'none'}"]


def rank_pids(run_dir):
    """PIDs of the ringtrain processes of this run (not the launcher), by rank."""
    out = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() != "ringtrain":
                    continue
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if f"--run.dir={run_dir}".encode() not in f.read().split(b"\0"):
                    continue
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = dict(kv.split(b"=", 1) for kv in f.read().split(b"\0") if b"=" in kv)
            out[int(env.get(b"OMPI_COMM_WORLD_RANK", b"0"))] = int(pid)
        except (OSError, ValueError):
            continue
    return out


def writing_checkpoint(run_dir):
    d = os.path.join(run_dir, "checkpoints")
    try:
        return any(n.endswith(".tmp") for n in os.listdir(d))
    except OSError:
        return False


def model_bytes(path):
    import h5py
    with h5py.File(path, "r") as f:
        out = {}
        f["model"].visititems(lambda name, obj: out.__setitem__(name, obj[()].tobytes()) if hasattr(obj, "shape") else None)
        return out


def kill_ranks(run_dir):
    for pid in rank_pids(run_dir).values():
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def run_to_end(cmd, log, run_dir):
    with open(log, "wb") as out:
        try:
            return subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, timeout=600).returncode
        except subprocess.TimeoutExpired:
            kill_ranks(run_dir)
            return "hung"


def has_checkpoint(run_dir):
    d = os.path.join(run_dir, "checkpoints")
    try:
        return any(n.startswith("ckpt-") and n.endswith(".h5") for n in os.listdir(d))
    except OSError:
        return False


def trial(a, i, rng, work, ref_params, ref_seconds, scale=1.0):
    run_dir = os.path.join(work, f"trial{i}")
    victim = rng.randrange(a.np)
    during_write = i % 2 == 1
    at = rng.uniform(0.05, 0.9) * ref_seconds * scale
    log = open(os.path.join(work, f"trial{i}.log"), "wb")
    start = time.monotonic()
    proc = subprocess.Popen(train_cmd(a, run_dir, False), stdout=log, stderr=subprocess.STDOUT)
    killed_at = None
    had_checkpoint = False
    moment = ""
    while proc.poll() is None:
        now = time.monotonic() - start
        if during_write and victim != 0:
            victim = 0  # only rank 0 writes
        # During a write of a checkpoint that is not the first, so that the
        # resume has an older one to fall back on.
        ready = (writing_checkpoint(run_dir) and has_checkpoint(run_dir)) if during_write else now >= at
        if ready or (during_write and now > 0.9 * ref_seconds):
            had_checkpoint = has_checkpoint(run_dir)
            pids = rank_pids(run_dir)
            if victim in pids:
                try:
                    os.kill(pids[victim], signal.SIGKILL)
                except ProcessLookupError:
                    pass
                killed_at = time.monotonic()
                moment = ("during a checkpoint write" if ready and during_write else "") + f" at {now:.2f} s"
                break
        time.sleep(0.0005 if during_write else 0.01)
    try:
        rc = proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        kill_ranks(run_dir)
        rc = "hung"
    end_s = (time.monotonic() - killed_at) if killed_at else None
    log.close()
    resume_log = os.path.join(work, f"trial{i}.resume.log")
    resume_rc = run_to_end(train_cmd(a, run_dir, True), resume_log, run_dir)
    # A checkpoint that existed before the kill must be the one resumed from
    # (a run that silently started over would end identical too).
    resume_text = open(resume_log, errors="replace").read()
    resumed = "resumed from " in resume_text
    resume_error = next((l for l in resume_text.splitlines() if l.startswith("ringtrain: error")), "")
    same = False
    final = os.path.join(run_dir, "final.h5")
    if resume_rc == 0 and os.path.exists(final):
        same = model_bytes(final) == ref_params
    ok = (killed_at is not None and rc != 0 and end_s is not None and end_s <= a.limit and same
          and (resumed or not had_checkpoint))
    return {"trial": i, "victim_rank": victim, "moment": moment.strip() or "not killed (run ended first)",
            "job_exit": rc, "seconds_to_end": end_s, "resume_exit": resume_rc, "resumed_from_checkpoint": resumed,
            "bit_identical": same, "ok": ok, "resume_error": resume_error}


def main():
    a = parse_args()
    try:
        import h5py  # noqa: F401
    except ImportError:
        print("fault_matrix: python3-h5py is needed", file=sys.stderr)
        return 2
    rng = random.Random(a.seed)
    work = tempfile.mkdtemp(prefix="ringtrain-faults-")
    try:
        ref_dir = os.path.join(work, "reference")
        t0 = time.monotonic()
        rc = run_to_end(train_cmd(a, ref_dir, False), os.path.join(work, "reference.log"), ref_dir)
        ref_seconds = time.monotonic() - t0
        if rc != 0:
            print(open(os.path.join(work, "reference.log")).read()[-3000:], file=sys.stderr)
            print(f"fault_matrix: the reference run failed (exit {rc})", file=sys.stderr)
            return 1
        ref = model_bytes(os.path.join(ref_dir, "final.h5"))
        print(f"reference: {a.np} ranks, {ref_seconds:.1f} s uninterrupted; {a.trials} trials, SIGKILL one rank each")
        print(f"{'trial':>5} {'rank':>4}  {'moment':<36} {'job exit':>8} {'ended after':>11} {'resume':>6} {'from ckpt':>9}  bit-identical")
        results = []
        for i in range(a.trials):
            for attempt in range(4):  # a run faster than the reference may end before its kill: earlier
                r = trial(a, i, rng, work, ref, ref_seconds, 0.5 ** attempt)
                if not r["moment"].startswith("not killed"):
                    break
                shutil.rmtree(os.path.join(work, f"trial{i}"), ignore_errors=True)
            results.append(r)
            end = f"{r['seconds_to_end']:.2f} s" if r["seconds_to_end"] is not None else "-"
            print(f"{i:>5} {r['victim_rank']:>4}  {r['moment']:<36} {str(r['job_exit']):>8} {end:>11} "
                  f"{str(r['resume_exit']):>6} {'yes' if r['resumed_from_checkpoint'] else 'no':>9}  "
                  f"{'yes' if r['bit_identical'] else 'NO'}{'' if r['ok'] else '  <- FAIL'}",
                  flush=True)
            if not r["ok"] and r["resume_error"]:
                print(f"      resume: {r['resume_error'][:200]}", flush=True)
        ends = [r["seconds_to_end"] for r in results if r["seconds_to_end"] is not None]
        passed = sum(r["ok"] for r in results)
        writes = sum("checkpoint write" in r["moment"] for r in results)
        from_ckpt = sum(r["resumed_from_checkpoint"] for r in results)
        summary = {"trials": a.trials, "passed": passed, "killed_during_checkpoint_write": writes,
                   "resumed_from_a_checkpoint": from_ckpt,
                   "max_seconds_to_end": max(ends) if ends else None,
                   "median_seconds_to_end": sorted(ends)[len(ends) // 2] if ends else None,
                   "reference_seconds": ref_seconds, "limit_seconds": a.limit, "world_size": a.np}
        print(f"summary: {passed}/{a.trials} passed; {writes} kills during a checkpoint write; "
              f"{from_ckpt} resumed from a checkpoint; job ended "
              f"{summary['median_seconds_to_end']:.2f} s (median), {summary['max_seconds_to_end']:.2f} s (max) "
              f"after the kill; every resumed run bit-identical: {'yes' if all(r['bit_identical'] for r in results) else 'NO'}"
              if ends else f"summary: {passed}/{a.trials} passed")
        if a.json:
            with open(a.json, "w") as f:
                json.dump({"summary": summary, "trials": results}, f, indent=2)
        return 0 if passed == a.trials else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
