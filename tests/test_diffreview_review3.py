"""Review of the day's changes: defects left by the fixes themselves."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from sddkit.config import from_dict
from sddkit.service.app import create_app
from sddkit.training.recipe import TrainRecipe


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(None)) as c:
        yield c


def test_a_405_under_the_static_mount_allows_get_and_head(client):
    # the Allow of a 405 was rebuilt from the routes that have methods: none under the /static mount, so
    # StaticFiles' 405 went out with "Allow: " (nothing allowed), where it had no Allow header at all before
    for method in ("POST", "DELETE"):
        r = client.request(method, "/static/app.js")
        assert r.status_code == 405
        assert r.headers.get("allow") == "GET, HEAD", method
    assert client.post("/v1/model").headers.get("allow") == "GET, HEAD"  # a route's own methods, as before


def test_every_get_route_answers_head(client):
    # the README: "GET routes also answer HEAD"; /docs and /redoc answered HEAD with 405
    paths = [r.path for r in client.app.routes if "GET" in (getattr(r, "methods", None) or ())]
    assert "/docs" in paths and "/redoc" in paths
    for path in paths:
        assert client.head(path).status_code == client.get(path).status_code, path


def _molex_whisper_expert(level: str) -> dict:
    molex = {"num_experts": 2, "router": {"name": "softmax", "level": level}}
    encoder = {"name": "whisper_tiny", "pad_to_30s": True}
    return {"frontend": {"name": "ssl", "encoder": encoder, "adapter": "molex", "molex": molex}, "backend": "linear"}


def test_jointly_trained_mixture_experts_get_the_training_checks():
    # a mixture trained with its experts (freeze_experts: false) trains their MoLEx routers as `model` would:
    # an utterance-level router over Whisper's 30 s padding was refused for `model` only
    bad = {"experts": [_molex_whisper_expert("token"), _molex_whisper_expert("utterance")], "freeze_experts": False}
    with pytest.raises(Exception, match=r"mixture\.experts\[1\]: an utterance-level MoLEx router"):
        from_dict(TrainRecipe, {"mixture": bad})
    ok = {"experts": [_molex_whisper_expert("token")] * 2, "freeze_experts": False}
    assert isinstance(from_dict(TrainRecipe, {"mixture": ok}), TrainRecipe)


def test_a_run_killed_during_its_first_checkpoint_save_resumes(tmp_path, monkeypatch):
    # the first save renames step-N into place, then writes `latest`: a kill between the two left a checkpoint
    # without a pointer, which --resume (and `sdd cv`, which always resumes) refused as "deleted?" until the user
    # wrote the pointer by hand; the one checkpoint there is the one to continue from
    from test_crashsafety_review3 import _fit
    from test_train_support import install_tiny

    from sddkit.training import checkpoint as ckpt

    install_tiny(monkeypatch)
    real = ckpt.atomic_write_bytes

    def killed_at_the_pointer(path, data):
        if path.name == ckpt.LATEST:
            raise KeyboardInterrupt("killed")
        real(path, data)

    monkeypatch.setattr(ckpt, "atomic_write_bytes", killed_at_the_pointer)
    with pytest.raises(KeyboardInterrupt):
        _fit(tmp_path / "run")
    checkpoints = tmp_path / "run" / "checkpoints"
    assert [d.name for d in checkpoints.iterdir() if not d.name.startswith(".")] == ["step-00000002"]
    monkeypatch.setattr(ckpt, "atomic_write_bytes", real)
    with pytest.raises(Exception, match="no 'latest' pointer"):  # a fresh run still refuses to prune it
        _fit(tmp_path / "run")
    resumed = _fit(tmp_path / "run", resume=True)
    assert resumed.state.step == 6
    assert (tmp_path / "run" / "final" / "config.json").is_file()


def test_several_checkpoints_without_a_pointer_are_still_refused(tmp_path, monkeypatch):
    from test_crashsafety_review3 import _fit
    from test_train_support import install_tiny

    from sddkit.training import checkpoint as ckpt

    install_tiny(monkeypatch)

    (tmp_path / "step-00000002").mkdir()  # a lone folder that is no complete checkpoint: not adopted either
    assert ckpt.adopt_lone_checkpoint(tmp_path) is None and not (tmp_path / ckpt.LATEST).exists()
    two = tmp_path / "run" / "checkpoints"
    ckpt.save_checkpoint(two, "step-00000002", {"x": 1})
    ckpt.save_checkpoint(two, "step-00000004", {"x": 2})
    (two / ckpt.LATEST).unlink()
    assert ckpt.adopt_lone_checkpoint(two) is None and not (two / ckpt.LATEST).exists()
    with pytest.raises(Exception, match=r"holds checkpoint\(s\) step-00000002, step-00000004 but no 'latest'"):
        _fit(tmp_path / "run", resume=True)


def test_cv_compares_the_recipe_of_a_fold_whose_lone_checkpoint_lacks_its_pointer(tmp_path):
    # the trainer now resumes such a checkpoint, so `sdd cv` must check its recipe first, as for any started fold
    import json

    from test_crossval import _recipe

    from sddkit.config import to_dict
    from sddkit.errors import ConfigError
    from sddkit.training.crossval import RUN_NAME, HeldOut, check_fold_recipe, fold_recipe

    recipe, fold, fold_dir = _recipe(tmp_path), HeldOut("source", ("s1",)), tmp_path / "fold_s1"
    (fold_dir / "checkpoints" / "step-00000002").mkdir(parents=True)
    (fold_dir / RUN_NAME).write_text(json.dumps({"recipe": to_dict(fold_recipe(recipe, fold, fold_dir))}))
    check_fold_recipe(recipe, fold, fold_dir)  # the same recipe: fine
    other = _recipe(tmp_path)
    other.seed = 5
    with pytest.raises(ConfigError, match="trained with another recipe"):
        check_fold_recipe(other, fold, fold_dir)
