"""EfficientFormer's MetaPath importances: Gumbel training moves α, a block that contributes nothing ends least
important, α travels in the weights-only checkpoint, and ``nas supernet importance`` reads it."""
from __future__ import annotations

import json

import pytest
import torch

from nas.errors import UsageError
from supernet.checkpoint import load_importance, load_supernet, save_supernet
from supernet.config import TrainConfig
from supernet.gumbel import IDENTITY, MB4D, Importance, has_importance, metapaths, path_3d
from supernet.supernet import Supernet
from supernet.train import SupernetTrainer
from tests.helpers import run_nas

ZEROED = (2, 1)   # stage 3, position 2: its block is made to contribute nothing


def test_metapaths_follow_the_partition(tiny, tiny_hybrid):
    paths = {(s, i): p for s, i, p in metapaths(tiny)}
    assert paths[(0, 0)] == (MB4D, IDENTITY)
    assert paths[(3, 2)] == (MB4D, path_3d("mhsa"), IDENTITY)
    hybrid = {(s, i): p for s, i, p in metapaths(tiny_hybrid)}
    assert set(hybrid[(3, 0)]) == {MB4D, IDENTITY} | {path_3d(m) for m in tiny_hybrid.mixers}
    assert len(paths) == sum(tiny.max_depths)


def _zero(block: torch.nn.Module) -> None:
    with torch.no_grad():
        for name, p in block.named_parameters():
            if name.endswith("gamma"):      # both layer scales: the residual branch adds exactly nothing
                p.zero_()


def test_gumbel_training_moves_alpha_and_a_zeroed_block_is_least_important(tmp_path):
    cfg = TrainConfig(space="tiny", data="builtin:digits", epochs=1, batch_size=16, max_train_images=240,
                      num_random=0, val_images=32, bn_images=16, gumbel=True, alpha_lr=0.05)
    trainer = SupernetTrainer(cfg)
    zeroed = trainer.net.super_stages[ZEROED[0]].blocks4d[ZEROED[1]]
    assert not has_importance(trainer.net.state_dict())
    for _ in range(trainer.total_steps):
        _zero(zeroed)
        trainer.train_step()
    _zero(zeroed)
    importance = Importance.of(trainer.net)
    scores = importance.metapath
    assert max(abs(v - 1.0) for k, v in scores.items() if k[0] < 3) > 0.05     # moved away from uniform
    assert scores[ZEROED] == pytest.approx(1.0)              # no gradient ever reached its α
    assert scores[ZEROED] == min(scores.values())            # the least important position
    assert importance.stage(2) == pytest.approx(sum(scores[(2, i)] for i in range(3)))

    path = tmp_path / "g.pt"
    save_supernet(trainer.net, path)
    loaded = load_importance(path)                            # weights-only loading keeps α
    assert loaded.metapath == pytest.approx(scores)


def test_non_gumbel_training_leaves_alpha_alone_and_old_checkpoints_load(tmp_path, tiny):
    cfg = TrainConfig(space="tiny", data="builtin:digits", epochs=1, batch_size=16, max_train_images=32,
                      num_random=0, val_images=16, bn_images=16)
    trainer = SupernetTrainer(cfg)
    trainer.train_step()
    assert not has_importance(trainer.net.state_dict())
    # a checkpoint written before α existed (no metapath.* tensors) still loads, without importances
    net = Supernet(tiny)
    path = tmp_path / "old.pt"
    save_supernet(net, path)
    payload = torch.load(path, weights_only=True)
    payload["state_dict"] = {k: v for k, v in payload["state_dict"].items() if not k.startswith("metapath.")}
    torch.save(payload, path)
    load_supernet(path)
    with pytest.raises(UsageError, match="no MetaPath importances"):
        load_importance(path)


def test_importance_command_prints_json_and_plot(tmp_path, gumbel_ckpt):
    plot = tmp_path / "imp.png"
    proc = run_nas("supernet", "importance", str(gumbel_ckpt), "--plot", str(plot), "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert len(result["positions"]) == 10 and len(result["stages"]) == 4
    assert plot.stat().st_size > 1000
    row = result["positions"][-1]
    assert set(row["probabilities"]) == {MB4D, path_3d("mhsa"), IDENTITY}
    assert sum(row["probabilities"].values()) == pytest.approx(1.0)


def test_importance_of_a_supernet_without_gumbel_exits_2(tmp_path, tiny):
    path = tmp_path / "plain.pt"
    save_supernet(Supernet(tiny), path)
    proc = run_nas("supernet", "importance", str(path))
    assert proc.returncode == 2
    assert "no MetaPath importances" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_nas("supernet", "train", "--space", "tiny", "--data", "builtin:digits", "--epochs", "1",
                   "--out", str(tmp_path / "x.pt"), "--tau-start", "3")
    assert proc.returncode == 2 and "settings of --gumbel" in proc.stderr
