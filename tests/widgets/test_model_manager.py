"""Models dock: card summaries, rename, delete, export (real dialogs), import; Save as… asks."""

import sys
import zipfile

import numpy as np
import pytest
import yaml

import napari_attnseg.zoo as zoo
from napari_attnseg.models import load_model, read_card, save_model
from napari_attnseg.widgets._models import session

from .conftest import blobs, dock, errors, tiny_model, wait_done

CARD = dict(
    description="Tiny nuclei model for tests.",
    class_names=["background", "nucleus"],
    license="CC0-1.0",
    base_model="focal_attention_unet.nuclei",
    object_diameter=8.0,
    object_diameter_range=[6.0, 11.0],
    instances={"method": "watershed"},
    metrics={"validation": {"n_images": 7, "mean": {"dice": 0.8765, "jaccard": 0.78}}},
    training={"dataset": "blobs (generated)"},
    metadata={"task": "nuclei", "authors": ["Card Author"]},
)


@pytest.fixture
def mine(user_model_dir):
    model = tiny_model(**CARD)
    model.card.name = "mine"
    return save_model(model, zoo.user_model_dir(create=True) / "mine.safetensors")


@pytest.fixture
def shipped(monkeypatch, tmp_path):
    """A zoo with one model in it."""
    folder = tmp_path / "zoo"
    folder.mkdir()
    save_model(tiny_model(), folder / "unet.nuclei.safetensors")
    monkeypatch.setattr(zoo, "WEIGHTS_DIR", folder)
    return folder


class ExportForm:
    """Answers for the bioimage.io export form (see the ``export_form`` fixture)."""

    def __init__(self) -> None:
        self.answer: dict | None = {}  # fields to type, then Export; None = Cancel
        self.shown: list = []  # the fields as the form opened (ExportDetails)
        self.images: list = []  # the test images offered (None = a bundled sample)
        self.export_enabled: bool | None = None


@pytest.fixture
def export_form(monkeypatch):
    """Replace the export form's ``exec``: record what it shows, type answers, press a button."""
    from napari_attnseg.widgets._dialogs import ExportDetailsDialog

    form = ExportForm()

    def exec_(dialog):
        form.shown.append(dialog.details())
        form.images = [dialog.test_image.itemData(i) for i in range(dialog.test_image.count())]
        if form.answer is None:
            return 0  # Cancel
        answer = form.answer
        if "authors" in answer:
            dialog.authors.setPlainText("\n".join(answer["authors"]))
        if "description" in answer:
            dialog.description.setPlainText(answer["description"])
        if "licence" in answer:
            dialog.licence.setCurrentText(answer["licence"])
        if "test_image" in answer:
            dialog.test_image.setCurrentIndex(dialog.test_image.findData(answer["test_image"]))
        form.export_enabled = dialog.ok_button.isEnabled()
        return 1 if form.export_enabled else 0  # a disabled Export cannot be pressed

    monkeypatch.setattr(ExportDetailsDialog, "exec", exec_)
    return form


@pytest.fixture
def fake_writer(monkeypatch):
    """Replace the bioimage.io writer; record what it is given. Its notes carry CLI advice."""
    from napari_attnseg.export import ExportReport
    from napari_attnseg.widgets import models

    calls = []

    def write(model, out, *, image=None, authors=(), overwrite=False):
        calls.append({"card": model.card, "image": image, "authors": list(authors), "out": out})
        return ExportReport(path=out, test_source="x", notes=[
            "no authors given: pass --author NAME (bioimage.io asks for them)",
            "test input and cover: the bundled nuclei sample (pass an image of your own data)",
        ])

    monkeypatch.setattr(models, "export_bioimageio", write)
    return calls


def rdf(package) -> dict:
    with zipfile.ZipFile(package) as archive:
        return yaml.safe_load(archive.read("rdf.yaml"))


def names(widget):
    return [c.name for c in widget._choices]


def test_the_card_summary_says_what_the_model_is(viewer, mine, shipped):
    widget = dock(viewer, "Models")
    assert names(widget) == ["unet.nuclei", "mine"]
    assert widget.select("mine")
    text = widget.card.toPlainText()
    for expected in ("focal_attention_unet (width 4, depth 2)", "task nuclei",
                     "background, nucleus", "dice 0.876, jaccard 0.780 on 7 image(s)",
                     "CC0-1.0", "fine-tuned from focal_attention_unet.nuclei",
                     "trained on blobs (generated)", "diameter 8.0 px at training scale "
                     "(typical 6.0–11.0)", "instance labels (method watershed)",
                     "your model folder"):
        assert expected in " ".join(text.split()), expected
    # zoo models are read-only: rename and delete are disabled and say why
    assert widget.select("unet.nuclei")
    assert not widget.rename_button.isEnabled() and not widget.delete_button.isEnabled()
    assert "read-only" in widget.rename_button.toolTip()
    assert widget.export_button.isEnabled()


def test_rename_and_delete_act_on_saved_models_and_every_picker_follows(
        viewer, mine, dialogs, notifications):
    widget = dock(viewer, "Models")
    segment = dock(viewer, "Segment")
    widget.select("mine")
    dialogs.text = "nuclei v2"
    renamed = widget.rename()
    assert renamed.name == "nuclei_v2" and not mine.exists()
    assert read_card(renamed.key)["name"] == "nuclei_v2"
    assert [c.name for c in segment.model_picker._choices] == ["nuclei_v2"]

    dialogs.confirm = False  # deleting asks first; no keeps the files
    assert not widget.delete()
    assert load_model(renamed.key) is not None
    dialogs.confirm = True
    assert widget.delete()
    assert names(widget) == [] and segment.model_picker.current() is None
    assert not list(zoo.user_model_dir().glob("nuclei_v2*"))
    assert errors(notifications) == []


def test_export_to_safetensors_through_a_save_dialog_and_import_it_back(
        viewer, mine, dialogs, tmp_path, notifications):
    widget = dock(viewer, "Models")
    widget.select("mine")
    dialogs.save = tmp_path / "shared" / "for a colleague"
    (tmp_path / "shared").mkdir()
    path = widget.export()
    assert path == tmp_path / "shared" / "for a colleague.safetensors"
    assert dialogs.asked == [("save", "Export mine")]
    assert read_card(path)["description"] == CARD["description"]

    dialogs.save = path  # exporting onto it again asks; no keeps it
    dialogs.confirm = False
    before = path.stat().st_mtime_ns
    assert widget.export() is None and path.stat().st_mtime_ns == before

    mine.unlink()
    mine.with_suffix(".json").unlink()
    dialogs.open = path
    imported = widget.import_model()
    # named after the file chosen (a package is named after the card inside it)
    assert imported is not None and imported.kind == "user"
    assert imported.name == "for_a_colleague"
    a, b = load_model(imported.key).state_dict(), load_model(path).state_dict()
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    # importing again offers to replace; declining keeps the model as it is
    dialogs.confirm = False
    assert widget.import_model() is None
    assert dialogs.asked[-1][0] == "confirm"
    assert errors(notifications) == []


@pytest.mark.slow
def test_bioimageio_export_runs_as_a_job_and_the_zip_imports_back(
        viewer, qtbot, mine, dialogs, export_form, tmp_path, notifications):
    pytest.importorskip("bioimageio.spec")
    widget = dock(viewer, "Models")
    widget.select("mine")
    dialogs.save = tmp_path / "mine-bioimageio.zip"
    export_form.answer = {"authors": ["Ada Lovelace", "Alan Turing"],
                          "description": "Nuclei in my own confocal stacks.", "licence": "MIT"}
    assert widget.export() == dialogs.save
    wait_done(qtbot, widget, timeout=180_000)
    assert errors(notifications) == [] and dialogs.save.exists()
    assert "exported mine to" in widget.jobs.status.text()
    # what was typed is what the package says
    written = rdf(dialogs.save)
    assert [a["name"] for a in written["authors"]] == ["Ada Lovelace", "Alan Turing"]
    assert written["description"] == "Nuclei in my own confocal stacks."
    assert written["license"] == "MIT"
    assert not any("--" in message for _, message in notifications)
    mine.unlink()
    mine.with_suffix(".json").unlink()
    imported = widget.import_model(dialogs.save)
    assert imported.name == "mine"
    card = load_model(imported.key).card  # the card inside says the same
    assert card.description == "Nuclei in my own confocal stacks." and card.license == "MIT"
    assert card.metadata["authors"] == ["Ada Lovelace", "Alan Turing"]


def test_the_export_form_is_prefilled_from_the_card_and_its_answers_reach_the_writer(
        viewer, qtbot, mine, dialogs, export_form, fake_writer, tmp_path, notifications):
    photo = np.random.default_rng(0).integers(0, 255, (3, 40, 50), dtype=np.uint8)
    viewer.add_image(photo, name="my stack")
    viewer.dims.set_point(0, 1)
    viewer.add_image(photo[0].astype(np.float32), name="made [x]",
                     metadata={"napari_attnseg": {"role": "probability"}})
    widget = dock(viewer, "Models")
    widget.select("mine")
    dialogs.save = tmp_path / "mine.zip"
    export_form.answer = {"authors": ["Ada Lovelace", " ", "Grace Hopper"],
                          "description": "typed\ndescription", "licence": "CC-BY-4.0",
                          "test_image": "my stack"}
    assert widget.export() == dialogs.save
    wait_done(qtbot, widget)
    # the form opened with what the card says, and offered the user's images (not outputs)
    assert export_form.shown[0].authors == ["Card Author"]
    assert export_form.shown[0].description == CARD["description"]
    assert export_form.shown[0].licence == "CC0-1.0"
    assert export_form.images == [None, "my stack"]
    (call,) = fake_writer
    assert call["authors"] == ["Ada Lovelace", "Grace Hopper"] and call["out"] == dialogs.save
    assert call["card"].description == "typed description"
    assert call["card"].license == "CC-BY-4.0"
    assert call["card"].metadata["authors"] == ["Ada Lovelace", "Grace Hopper"]
    assert np.array_equal(call["image"], photo[1])  # the slice shown now
    # the writer's command-line advice never reaches the user
    assert errors(notifications) == []
    assert not any("--" in message for _, message in notifications)
    assert any("export form" in message for _, message in notifications)
    # the session's model and the file keep their own card
    assert session().template(widget.current()).card.description == CARD["description"]
    assert read_card(mine)["license"] == "CC0-1.0"


def test_cancelling_the_export_form_or_leaving_out_the_authors_exports_nothing(
        viewer, mine, dialogs, export_form, fake_writer, tmp_path, notifications):
    widget = dock(viewer, "Models")
    widget.select("mine")
    dialogs.save = tmp_path / "mine.zip"
    export_form.answer = None  # Cancel
    assert widget.export() is None
    export_form.answer = {"authors": []}  # Export stays disabled without an author
    assert widget.export() is None and export_form.export_enabled is False
    assert fake_writer == [] and not widget.jobs.busy and not dialogs.save.exists()
    assert errors(notifications) == []


def test_a_missing_bioimageio_extra_names_the_install_command(
        viewer, mine, dialogs, export_form, monkeypatch, tmp_path, notifications):
    monkeypatch.setitem(sys.modules, "bioimageio.spec", None)  # import fails
    widget = dock(viewer, "Models")
    widget.select("mine")
    dialogs.save = tmp_path / "mine.zip"
    assert widget.export() is None
    assert export_form.shown == [] and not widget.jobs.busy and not dialogs.save.exists()
    assert 'pip install "napari-attnseg[bioimageio]"' in errors(notifications)[-1]


def test_foreign_or_broken_files_are_refused_by_name(viewer, user_model_dir, tmp_path,
                                                     notifications):
    import zipfile

    foreign = tmp_path / "other-tool.zip"
    with zipfile.ZipFile(foreign, "w") as archive:
        archive.writestr("rdf.yaml", "type: model\n")
    widget = dock(viewer, "Models")
    assert widget.import_model(foreign) is None
    assert "did not export" in errors(notifications)[-1]
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"nope")
    assert widget.import_model(broken) is None
    assert "cannot import broken.safetensors" in errors(notifications)[-1]
    assert not list(zoo.user_model_dir().glob("*.safetensors"))


@pytest.mark.slow
def test_finetune_save_as_asks_before_replacing_a_model(
        viewer, qtbot, mine, dialogs, notifications):
    from .test_finetune import quick, round_

    image, labels = blobs()
    viewer.add_image(image, name="cells")
    viewer.add_labels(labels, name="truth")
    widget = dock(viewer, "Fine-tune")
    widget.model_picker.select("mine")
    quick(widget, epochs=1)
    round_(qtbot, widget)
    before = mine.read_bytes()
    widget.save_name.setText("mine")
    dialogs.confirm = False
    assert widget.save() is None  # no: nothing written, no "mine-2" either
    assert mine.read_bytes() == before and not list(zoo.user_model_dir().glob("mine-*"))
    assert "not saved" in widget.summary.text()
    dialogs.confirm = True
    assert widget.save() == zoo.user_model_dir() / "mine.safetensors"
    assert mine.read_bytes() != before and read_card(mine)["base_model"] == "mine"
    assert errors(notifications) == []
