"""Request metrics in prometheus_client's multiprocess mode: each process writes its own file,
named by its process id, which our values learn once per process (not a system call an update).
Run in a fresh interpreter: the mode is chosen when prometheus_client is first imported."""

import subprocess
import sys
import textwrap

ROOT = __file__.rsplit("/tests/", 1)[0]

SCRIPT = textwrap.dedent("""
    import os, sys
    sys.path.insert(0, sys.argv[1])
    from decimal import Decimal
    from prometheus_client import CollectorRegistry, multiprocess
    import tracing
    from services.metrics import Metrics

    def served(metrics, status):
        info = tracing.begin(None)
        info.family, info.model, info.provider = "openai", "m", "p"
        info.credits, info.input_tokens, info.output_tokens = Decimal("0.5"), 3, 4
        metrics.request_done(info, status, 0.02)

    metrics = Metrics()
    served(metrics, 200)
    child = os.fork()
    if child == 0:  # a forked worker: its own file, its own figures
        served(metrics, 200)
        served(metrics, 429)
        os._exit(0)
    os.waitpid(child, 0)
    served(metrics, 200)
    files = sorted(name for name in os.listdir(os.environ["PROMETHEUS_MULTIPROC_DIR"])
                   if name.startswith("counter_"))
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    total = {}
    for family in registry.collect():
        for sample in family.samples:
            if sample.name in ("tollgate_requests_total", "tollgate_tokens_total"):
                key = sample.name + ":" + ",".join(sample.labels.get(k, "")
                                                   for k in ("status", "kind"))
                total[key] = total.get(key, 0) + sample.value
    print(files == sorted([f"counter_{os.getpid()}.db", f"counter_{child}.db"]))
    print(sorted(total.items()))
""")


def test_forked_processes_keep_their_own_figures_and_they_add_up(tmp_path):
    done = subprocess.run([sys.executable, "-c", SCRIPT, ROOT], capture_output=True, text=True,
                          env={"PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PATH": "/usr/bin"},
                          timeout=60)
    assert done.returncode == 0, done.stderr
    files_ok, totals = done.stdout.strip().splitlines()
    assert files_ok == "True"
    assert totals == str([("tollgate_requests_total:200,", 3.0),
                          ("tollgate_requests_total:429,", 1.0),
                          ("tollgate_tokens_total:,input", 12.0),
                          ("tollgate_tokens_total:,output", 16.0)])


def test_the_settlement_queue_depth_follows_its_changes():
    """Written only when it changed, the gauge still shows the depth last read, back to 0 too."""
    from prometheus_client import generate_latest

    from services.metrics import Metrics

    metrics = Metrics()

    def shown():
        for line in generate_latest(metrics.registry).decode().splitlines():
            if line.startswith("tollgate_settlement_queue_depth "):
                return float(line.split()[1])
        return None

    for depth in (0, 0, 3, 3, 5, 0, 0, 2):
        metrics.settle_queue_depth(depth)
        assert shown() == depth
