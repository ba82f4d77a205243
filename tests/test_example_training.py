"""The example trains from its own artifact: unpacked, loaded with Determined's loader, and run with
Determined's ``pytorch.Trainer`` in local mode on the CPU for a few batches and one validation."""

from __future__ import annotations

import json
import sys
import tarfile
import textwrap
from pathlib import Path

from hatch_detmodel import build

from .conftest import EXAMPLE, require_module, run

CHILD = textwrap.dedent(
    """
    import json, math, sys
    import determined.load
    from determined import pytorch
    from ruamel.yaml import YAML

    config = YAML(typ="safe").load(open("const.yaml"))
    trial_cls = determined.load.trial_class_from_entrypoint(config["entrypoint"])
    calls = {"train": [], "validate": 0}
    train_batch, evaluate_batch = trial_cls.train_batch, trial_cls.evaluate_batch

    def counted_train(self, *args, **kwargs):
        metrics = train_batch(self, *args, **kwargs)
        calls["train"].append(float(metrics["loss"]))
        return metrics

    def counted_evaluate(self, *args, **kwargs):
        calls["validate"] += 1
        return evaluate_batch(self, *args, **kwargs)

    trial_cls.train_batch, trial_cls.evaluate_batch = counted_train, counted_evaluate
    with pytorch.init(hparams=config["hyperparameters"]) as context:
        trainer = pytorch.Trainer(trial_cls(context), context)
        trainer.fit(max_length=pytorch.Batch(3), validation_period=pytorch.Batch(3))
    assert all(math.isfinite(loss) for loss in calls["train"])
    print(json.dumps({"entrypoint": config["entrypoint"], "class": trial_cls.__qualname__,
                      "train_batches": len(calls["train"]), "validation_batches": calls["validate"]}))
    """
)


def test_example_trains_from_its_artifact(tmp_path: Path) -> None:
    require_module("determined")
    require_module("torch")
    archive, sidecar = build(EXAMPLE, tmp_path / "dist")
    manifest = json.loads(sidecar.read_text())
    unpacked = tmp_path / "unpacked"
    unpacked.mkdir()
    with tarfile.open(archive) as tar:
        tar.extractall(unpacked, filter="data")
    result = run([sys.executable, "-c", CHILD], cwd=unpacked, timeout=300)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["entrypoint"] == manifest["determined_entrypoint"]  # const.yaml uses the recorded one
    assert report["class"] == "SyntheticTrial"
    assert report["train_batches"] == 3
    assert report["validation_batches"] >= 1
