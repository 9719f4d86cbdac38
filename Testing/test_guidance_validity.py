"""Classifier-free guidance only where the model was trained for it (card
``conditioning.classifier_free_guidance``): BrainLDM and BrLP were trained with their conditions
always given, so any guidance but 1 is refused, by the API, the pipelines and the command line."""

import copy

import pytest

from generate_fixtures import register_tiny_brain, tiny_brain_data
from SynthMedLib.cards import load_card
from SynthMedLib.cli import main
from SynthMedLib.errors import InputError
from SynthMedLib.model import Model
from SynthMedLib.pipelines.generate import generate
from SynthMedLib.sampling.samplers import check_guidance


def test_published_cards_say_whether_guidance_is_valid():
    assert load_card("brainldm-ukb").conditioning.classifier_free_guidance is False
    assert load_card("brlp").conditioning.classifier_free_guidance is False
    assert load_card("demo-brain").conditioning.classifier_free_guidance is True
    for model in ("brainldm-ukb", "brlp"):
        check_guidance(load_card(model), 1.0)  # the plain conditional model is always fine
        with pytest.raises(InputError, match="no condition dropout.*leave --guidance at 1 \\(got 3\\)"):
            check_guidance(load_card(model), 3.0)
    check_guidance(load_card("demo-brain"), 3.0)
    with pytest.raises(InputError, match="no conditions to guide"):
        check_guidance(load_card("maisi-ct-rflow"), 2.0)


def test_brainldm_refuses_guidance_on_the_command_line_before_looking_for_weights(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SYNTHMED_HOME", str(tmp_path))  # no weights anywhere
    code = main(["generate", "--model", "brainldm-ukb", "--age", "60", "--sex", "F", "--guidance", "3",
                 "--out", str(tmp_path / "out")])
    assert code != 0
    err = capsys.readouterr().err
    assert "classifier-free guidance is not valid" in err and "not found" not in err
    assert not (tmp_path / "out").exists()


def test_generate_refuses_guidance_on_a_model_trained_without_dropout(tmp_path, monkeypatch):
    monkeypatch.setenv("SYNTHMED_HOME", str(tmp_path))
    data = copy.deepcopy(tiny_brain_data())
    data["id"] = "tiny-no-dropout"
    data["conditioning"]["classifier_free_guidance"] = False
    register_tiny_brain(tmp_path / "source", data=data)
    model = Model.from_card("tiny-no-dropout", needs="generate")
    conditions = {"age": 70, "sex": "F", "diagnosis": "CN"}
    with pytest.raises(InputError, match="classifier-free guidance is not valid"):
        generate(model, conditions, steps=2, guidance=2.0)
    assert generate(model, conditions, steps=2, guidance=1.0)[0].provenance["guidance"] == 1.0
