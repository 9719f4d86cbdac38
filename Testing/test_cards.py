"""Model cards: schema + semantic validation, registry, networks built from every shipped card."""

import copy
import json

import pytest
import torch

from SynthMedLib.cards import SHIPPED_DIR, Card, list_cards, load_card
from SynthMedLib.errors import CardError
from SynthMedLib.networks import build_network, build_networks, shrink_args

SHIPPED = ("brainldm-ukb", "brlp", "maisi-ct-rflow", "demo-brain")


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    monkeypatch.setenv("SYNTHMED_HOME", str(tmp_path / "home"))


def brainldm_data():
    return json.loads((SHIPPED_DIR / "brainldm-ukb" / "card.json").read_text())


def test_every_shipped_card_loads_and_is_listed():
    errors = []
    ids = {card.id for card in list_cards(errors)}
    assert errors == []
    assert set(SHIPPED) <= ids
    for model_id in SHIPPED:
        card = load_card(model_id)
        assert card.id == model_id and card.directory == SHIPPED_DIR / model_id
        assert card["space"] is card.space


def test_published_architectures_are_the_cited_ones():
    brainldm = load_card("brainldm-ukb")
    assert brainldm.networks["autoencoder"].args["channels"] == [64, 128, 128, 128]
    assert brainldm.networks["diffusion"].args["channels"] == [256, 512, 768]
    assert brainldm.networks["diffusion"].args["in_channels"] == 7
    assert brainldm.conditioning.mode == "both"
    assert [v["name"] for v in brainldm.conditioning.variables] == [
        "sex", "age", "ventricular_volume", "brain_volume"]
    assert brainldm.space["shape"] == [160, 224, 160] and brainldm.latent.shape == (20, 28, 20)
    brlp = load_card("brlp")
    assert len(brlp.conditioning.variables) == 8
    assert brlp.networks["controlnet"].args["conditioning_embedding_in_channels"] == 4
    assert brlp.space["spacing"] == [1.5, 1.5, 1.5] and brlp.space["shape"] == [120, 144, 120]
    maisi = load_card("maisi-ct-rflow")
    assert maisi.scheduler.type == "rectified_flow" and maisi.scheduler.default_steps == 30
    assert maisi.latent.scale_in_checkpoint
    # 132 ids less 8 placeholders (label_dict_124_to_132), plus the body envelope (200)
    assert len(maisi.outputs["labels"]["segments"]) == 125 and maisi.outputs["labels"]["segments"][-1]["id"] == 200
    for card in (brainldm, brlp, maisi):
        assert all(s.startswith("https://") for s in card.source)


def tiny_widths(card, name):
    levels = card.networks[name].levels
    return [8 * (i + 1) if name == "autoencoder" else 16 for i in range(levels)]


@pytest.mark.parametrize("model_id", SHIPPED)
def test_every_card_builds_and_runs_its_networks_at_reduced_width(model_id):
    card = load_card(model_id)
    overrides = {"autoencoder": {"num_splits": 1}} if "maisi" in model_id else {}
    widths = {name: tiny_widths(card, name) for name in card.networks}
    if "controlnet" in widths:
        widths["controlnet"] = widths["diffusion"]
    nets = build_networks(card, channels=widths, overrides=overrides)
    for net in nets.values():
        net.eval()
    factor = card.latent_downsampling
    image = torch.rand(1, 1, *(2 * factor,) * 3)
    with torch.no_grad():
        z = nets["autoencoder"].encode_stage_2_inputs(image)
        assert z.shape == (1, card.latent.channels, 2, 2, 2)
        out_channels = card.networks["autoencoder"].args["out_channels"]
        assert nets["autoencoder"].decode_stage_2_outputs(z).shape == (1, out_channels, *image.shape[2:])
        unet_factor = 2 ** (len(widths["diffusion"]) - 1)
        latent = torch.randn(1, card.latent.channels, *(2 * unet_factor,) * 3)
        kwargs = unet_inputs(card, latent)
        if "controlnet" in nets:
            cond_channels = card.conditioning.controlnet["channels"]
            cond_size = 2 * unet_factor * (factor if card.conditioning.controlnet_input == "label_map" else 1)
            cond = torch.rand(1, cond_channels, *(cond_size,) * 3)
            cn_kwargs = {k: v for k, v in kwargs.items() if k in ("context", "class_labels")}
            down, mid = nets["controlnet"](latent, torch.tensor([10]), controlnet_cond=cond, **cn_kwargs)
            kwargs.update(down_block_additional_residuals=down, mid_block_additional_residual=mid)
        x = kwargs.pop("x")
        out = nets["diffusion"](x, torch.tensor([10]), **kwargs)
    assert out.shape == latent.shape


def unet_inputs(card, latent):
    variables = card.conditioning.variables
    mode = card.conditioning.mode
    vector = torch.rand(1, 1, len(variables))
    kwargs = {"x": latent}
    if mode in ("crossattn", "both"):
        kwargs["context"] = vector
    if mode in ("concat", "both"):
        kwargs["x"] = torch.cat([latent, vector[:, 0, :, None, None, None].expand(
            -1, -1, *latent.shape[2:])], dim=1)
    extra = card.conditioning.extra_inputs
    if "spacing_tensor" in extra:
        kwargs["spacing_tensor"] = torch.tensor([[150.0, 150.0, 150.0]])
    if "class_labels" in extra:
        kwargs["class_labels"] = torch.tensor([1])
    return kwargs


def test_shrink_keeps_one_head_per_level_and_valid_groups():
    args = load_card("brainldm-ukb").network_args("diffusion")
    small = shrink_args(args, [16, 32, 48])
    assert small["channels"] == [16, 32, 48]
    assert small["num_head_channels"] == [0, 32, 48]
    assert small["norm_num_groups"] == 16
    with pytest.raises(CardError, match="3 levels"):
        shrink_args(args, [16, 32])


def test_network_class_outside_the_allow_list_is_refused():
    data = brainldm_data()
    data["networks"]["autoencoder"]["class"] = "os.system"
    with pytest.raises(CardError, match=r"\$\.networks\.autoencoder\.class"):
        Card(data)


def test_missing_field_is_named():
    data = brainldm_data()
    del data["latent"]["scale_factor"]
    with pytest.raises(CardError, match=r"\$\.latent: 'scale_factor' is a required property"):
        Card(data)


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["networks"]["diffusion"].update(weights="unet"),
     r"\$\.networks\.diffusion\.weights: 'unet' is not a key"),
    (lambda d: d["latent"].update(channels=4), r"\$\.latent\.channels: 4 but the autoencoder's latent_channels is 3"),
    (lambda d: d["conditioning"]["variables"][1].update(range=[90, 40]), r"variables\[1\] \(age\)\.range: min 90"),
    (lambda d: d["conditioning"]["variables"][1]["normalise"].update(min=82), r"\(age\)\.normalise: min 82"),
    (lambda d: d["networks"]["diffusion"]["args"].update(in_channels=3),
     r"in_channels: 3 but conditioning mode 'both' with 4 variables needs 3 latent \+ 4"),
    (lambda d: d["networks"]["diffusion"]["args"].update(cross_attention_dim=5),
     r"cross_attention_dim: 5 but there are 4"),
    (lambda d: d["latent"].update(shape=[20, 28, 21]), r"\$\.latent\.shape: \[20, 28, 21\]"),
    (lambda d: d["pipelines"].update(progression=["autoencoder", "controlnet"]), r"needs network 'controlnet'"),
    (lambda d: d["space"].update(orientation="RLS"), r"\$\.space\.orientation: 'RLS' names the same axis twice"),
])
def test_semantic_errors_name_the_field_and_why(edit, message):
    data = brainldm_data()
    edit(data)
    with pytest.raises(CardError, match=message):
        Card(data)


def test_controlnet_must_match_the_unet():
    data = json.loads((SHIPPED_DIR / "brlp" / "card.json").read_text())
    data["networks"]["controlnet"]["args"]["channels"] = [256, 512, 512]
    with pytest.raises(CardError, match=r"\$\.networks\.controlnet\.args: its channels"):
        Card(data)


def test_card_files_bad_json_unknown_id_and_paths(tmp_path):
    bad = tmp_path / "bad" / "card.json"
    bad.parent.mkdir()
    bad.write_text('{"id": "x",\n "version": }')
    with pytest.raises(CardError, match="not valid JSON: line 2"):
        load_card(bad)
    with pytest.raises(CardError, match="unknown model 'nope'.*brainldm-ukb"):
        load_card("nope")
    good = tmp_path / "mine"
    good.mkdir()
    data = brainldm_data()
    data["id"] = "mine"
    (good / "card.json").write_text(json.dumps(data))
    assert load_card(good).id == "mine" and load_card(good / "card.json").directory == good


def test_user_card_in_the_cache_is_listed_and_cannot_shadow_a_shipped_one(tmp_path):
    home = tmp_path / "home" / "models"
    for model_id in ("my-model", "brlp"):
        (home / model_id).mkdir(parents=True)
        data = brainldm_data()
        data["id"] = model_id
        data["title"] = "user copy"
        (home / model_id / "card.json").write_text(json.dumps(data))
    assert load_card("my-model").title == "user copy"
    assert load_card("brlp").title != "user copy"


def test_card_view_is_read_only_copyable_and_pipeline_aware():
    card = load_card("brlp")
    copy_ = card.to_dict()
    copy_["id"] = "changed"
    assert card.id == "brlp"
    assert card.networks_for("progression") == ["autoencoder", "diffusion", "controlnet"]
    with pytest.raises(CardError, match="does not support 'progression'"):
        load_card("brainldm-ukb").networks_for("progression")
    assert card.variable("hippocampus")["unit"] == "ml"
    with pytest.raises(CardError, match="no conditioning variable 'weight'"):
        card.variable("weight")
    with pytest.raises(CardError, match="has no network 'vae'"):
        build_network(card, "vae")
    deep = copy.deepcopy(card.data)
    assert Card(deep).data == card.data
