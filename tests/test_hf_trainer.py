"""Issue 15: transformers' ``Trainer`` with a triclip PyTorch ``CLIPModel``, against the same run with transformers'
own ``CLIPModel`` from the same weights: the same losses step by step and the same trained weights; what
``save_model`` writes, and how that folder loads back (transformers' Trainer writes ``config.json`` only for its own
``PreTrainedModel`` subclasses, so the folder needs ``config=``; a clear error says so)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")

from clip_core.config import CLIPConfig  # noqa: E402
from clip_pt import CLIPModel  # noqa: E402
from tests.test_errors import CONFIG  # noqa: E402

ROWS = 8


class _Pairs(torch.utils.data.Dataset):
    """Eight (caption ids, mask, image) rows, fixed by a seed; every batch asks for CLIP's contrastive loss."""

    def __init__(self):
        rng = np.random.default_rng(0)
        lengths = rng.integers(2, 6, size=ROWS)
        ids = np.zeros((ROWS, 5), dtype=np.int64)
        for i, n in enumerate(lengths):
            ids[i, 0], ids[i, 1:n - 1], ids[i, n - 1] = 48, rng.integers(1, 47, size=n - 2), 49
        self.ids = torch.from_numpy(ids)
        self.mask = torch.from_numpy((np.arange(5) < lengths[:, None]).astype(np.int64))
        self.pixels = torch.from_numpy(rng.standard_normal((ROWS, 3, 16, 16)).astype(np.float32))

    def __len__(self):
        return ROWS

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "attention_mask": self.mask[i], "pixel_values": self.pixels[i]}


def _collate(rows):
    batch = {key: torch.stack([row[key] for row in rows]) for key in rows[0]}
    return {**batch, "return_loss": True}


def _train(model, out_dir):
    args = transformers.TrainingArguments(
        output_dir=str(out_dir), per_device_train_batch_size=4, max_steps=4, learning_rate=1e-2, weight_decay=0.1,
        warmup_steps=1, logging_steps=1, save_strategy="no", report_to=[], seed=0, data_seed=0,
        dataloader_num_workers=0, disable_tqdm=True, remove_unused_columns=False, use_cpu=True)
    trainer = transformers.Trainer(model=model, args=args, train_dataset=_Pairs(), data_collator=_collate)
    trainer.train()
    return trainer, [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("start")
    start = CLIPModel(CLIPConfig.from_dict(CONFIG.to_dict()), seed=0)
    start.save_pretrained(folder)
    ours, theirs = CLIPModel.from_pretrained(folder), transformers.CLIPModel.from_pretrained(folder)
    our_trainer, our_losses = _train(ours, tmp_path_factory.mktemp("ours"))
    their_trainer, their_losses = _train(theirs, tmp_path_factory.mktemp("theirs"))
    return start, our_trainer, our_losses, their_trainer, their_losses


def test_trainer_trains_a_triclip_model_as_transformers_model(trained):
    start, our_trainer, ours, their_trainer, theirs = trained
    assert len(ours) == len(theirs) == 4
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-4)  # log_history rounds losses to 4 decimals
    our_state, their_state = our_trainer.model.state_dict(), their_trainer.model.state_dict()
    assert set(our_state) == set(their_state)
    moved = 0
    for name, value in start.state_dict().items():
        if name.endswith("k_proj.bias"):
            # its true gradient is zero (a key bias adds the same score to every key of a query, which softmax
            # cancels): both runs feed AdamW rounding noise, whose normalised updates have random signs
            assert float((our_state[name] - value).abs().max()) < 5 * 1e-2  # at most ~lr per step
            continue
        np.testing.assert_allclose(our_state[name].numpy(), their_state[name].numpy(), rtol=0, atol=5e-5,
                                   err_msg=name)
        moved += not torch.equal(our_state[name], value)
    assert moved > len(our_state) // 2  # it really trained


def test_trainer_save_model_folder_reloads_with_the_config(trained, tmp_path):
    _, our_trainer, *_ = trained
    our_trainer.save_model(str(tmp_path / "saved"))
    assert (tmp_path / "saved" / "model.safetensors").is_file()
    assert not (tmp_path / "saved" / "config.json").exists()  # transformers writes it only for PreTrainedModel
    with pytest.raises(FileNotFoundError, match="Trainer writes only the weights"):
        CLIPModel.from_pretrained(tmp_path / "saved")
    reloaded = CLIPModel.from_pretrained(tmp_path / "saved", config=our_trainer.model.config)
    for name, value in our_trainer.model.state_dict().items():
        assert torch.equal(reloaded.state_dict()[name], value), name
    # transformers itself reads the same folder given the config
    theirs = transformers.CLIPModel.from_pretrained(tmp_path / "saved", config=transformers.CLIPConfig.from_dict(
        our_trainer.model.config.to_dict()))
    for name, value in our_trainer.model.state_dict().items():
        assert torch.equal(theirs.state_dict()[name], value), name
    our_trainer.model.save_pretrained(tmp_path / "full")  # triclip's own save: a folder that loads by itself
    again = CLIPModel.from_pretrained(tmp_path / "full")
    assert torch.equal(again.logit_scale, our_trainer.model.logit_scale)
