"""The contract every architecture honours, as one reusable test class.

Subclass :class:`ArchitectureContract` in ``test_<arch>.py``, set ``name``,
``options`` (compact options that keep the test fast) and ``cases`` (option
variants: every ablation switch and focal mode worth covering). Each test
below then runs for every case.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from napari_attnseg.models import (
    AttentionModule,
    attention_modules,
    capture_attention,
    create_model,
    focal_weights,
    load_model,
    prune,
    save_model,
)

ODD_SIZE = (37, 45)
#: (in_channels, n_classes) combinations, cycled through the cases
COMBOS = [(1, 1), (3, 2), (3, 3), (1, 2), (4, 1), (3, 1)]


class ArchitectureContract:
    name: str = ""
    options: dict = {}
    cases: list[dict] = [{}]
    #: whether the architecture accepts ``focal=`` for its attention modules
    supports_focal: bool = True

    def build(self, case: dict | None = None, in_channels: int = 1, n_classes: int = 1):
        return create_model(
            self.name,
            in_channels=in_channels,
            n_classes=n_classes,
            **{**self.options, **(case or {})},
        )

    def combo(self, case: dict) -> tuple[int, int]:
        return COMBOS[self.cases.index(case) % len(COMBOS)]

    # -- shape and gradient --------------------------------------------------
    def test_forward_backward_odd_size(self, case):
        in_channels, n_classes = self.combo(case)
        model = self.build(case, in_channels, n_classes).train()
        x = torch.randn(2, in_channels, *ODD_SIZE)
        y = model(x)
        assert y.shape == (2, n_classes, *ODD_SIZE)
        assert torch.isfinite(y).all()
        y.square().mean().backward()
        grads = [p.grad for p in model.parameters() if p.requires_grad]
        assert any(g is not None and g.abs().sum() > 0 for g in grads)

    @pytest.mark.parametrize("in_channels,n_classes", list(itertools.product((1, 3), (1, 2, 3))))
    def test_channels_and_classes(self, in_channels, n_classes):
        model = self.build(self.cases[0], in_channels, n_classes).eval()
        with torch.no_grad():
            y = model(torch.randn(1, in_channels, 40, 52))
        assert y.shape == (1, n_classes, 40, 52)

    @pytest.mark.parametrize("size", [(97, 131), (64, 64), (33, 70)])
    def test_any_size(self, size):
        model = self.build(self.cases[0]).eval()
        with torch.no_grad():
            y = model(torch.randn(1, 1, *size))
        assert y.shape[-2:] == size

    def test_wrong_channels_names_the_problem(self):
        model = self.build(self.cases[0], in_channels=3)
        with pytest.raises(ValueError, match="3 input channel"):
            model(torch.randn(1, 1, 32, 32))

    # -- config and persistence ---------------------------------------------
    def test_config_roundtrip(self, case):
        model = self.build(case)
        rebuilt = create_model(**model.config)
        assert rebuilt.config == model.config
        assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {
            k: v.shape for k, v in model.state_dict().items()
        }

    def test_save_load_identical_outputs(self, case, tmp_path):
        in_channels, n_classes = self.combo(case)
        model = self.build(case, in_channels, n_classes)
        model.train()
        model(torch.randn(2, in_channels, 32, 32))  # move batch-norm statistics
        model.eval()
        path = save_model(model, tmp_path / "model.safetensors", card={"class_names": ["a"]})
        loaded = load_model(path)
        x = torch.randn(1, in_channels, *ODD_SIZE)
        with torch.no_grad():
            assert torch.equal(loaded(x), model(x))
        assert loaded.config == model.config
        assert loaded.card.class_names == ["a"]

    # -- attention ----------------------------------------------------------
    def test_capture_shapes_and_range(self, case):
        model = self.build(case, in_channels=3)
        x = torch.randn(2, 3, *ODD_SIZE)
        maps = capture_attention(model, x)
        kinds = attention_modules(model)
        assert set(maps) <= set(kinds)
        for name, a in maps.items():
            assert 0.0 <= float(a.min()) and float(a.max()) <= 1.0, name
            if kinds[name] == "spatial":
                assert a.shape == (2, 1, *ODD_SIZE), name
            else:
                assert a.ndim == 2 and a.shape[0] == 2, name
        native = capture_attention(model, x, native=True)
        assert set(native) == set(maps)
        assert model.training  # mode restored

    def test_focal_zero_is_identity(self):
        if not self.supports_focal:
            pytest.skip("architecture has no Focal option")
        model = self.build({**self.cases[0], "focal": 0.0}).eval()
        modules = [
            m for _, m in model.named_modules() if isinstance(m, AttentionModule) and m.focal
        ]
        assert modules, "focal=0.0 built no Focal modules"
        seen = []

        def check(module, inputs, output):
            seen.append(torch.allclose(output, inputs[0]))

        hooks = [m.register_forward_hook(check) for m in modules]
        with torch.no_grad():
            model(torch.randn(1, 1, 64, 64))
        for h in hooks:
            h.remove()
        assert seen and all(seen)

    def test_prune_removes_exactly_below_threshold(self):
        if not self.supports_focal:
            pytest.skip("architecture has no Focal option")
        model = self.build({**self.cases[0], "focal": 1.0}).eval()
        names = list(focal_weights(model))
        low = set(names[::2])
        with torch.no_grad():
            for name, module in model.named_modules():
                if name in focal_weights(model):
                    module.focal.weight.fill_(0.1 if name in low else 0.7)
        pruned = prune(model, threshold=0.2)
        assert set(focal_weights(pruned)) == set(names) - low
        assert set(pruned.config["pruned"]) == low
        rebuilt = create_model(**pruned.config)
        assert set(rebuilt.state_dict()) == set(pruned.state_dict())
        kept = {k: v for k, v in pruned.state_dict().items()}
        for k, v in kept.items():
            assert torch.equal(v, model.state_dict()[k]), k
