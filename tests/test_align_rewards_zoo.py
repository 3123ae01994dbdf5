"""The pretrained reward zoo on tiny random models saved in the real formats and reloaded.

Each reward is loaded through its ``from_pretrained`` from a folder written by ``save_pretrained``
(plus a tiny CLIP BPE tokenizer, an aesthetic MLP ``.pth`` and an open_clip-layout HPS
checkpoint), so the loading code is the one used with the released weights.
"""

import string

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from transformers import (
    CLIPConfig,
    CLIPModel,
    CLIPTokenizer,
    VideoMAEConfig,
    VideoMAEForVideoClassification,
    VJEPA2Config,
    VJEPA2Model,
    YolosConfig,
    YolosForObjectDetection,
)

from genlab.align.rewards import clip_rewards, detection, video_rewards
from genlab.align.rewards.clip_rewards import (
    AestheticMLP,
    AestheticReward,
    ClipScoreReward,
    HPSReward,
    PickScoreReward,
    clip_image_embeddings,
    clip_state_dict_from_open_clip,
)
from genlab.align.rewards.detection import ObjectRemovalReward
from genlab.align.rewards.video_rewards import VideoMAEActionReward, VJEPA2TemporalReward, resample_frames
from genlab.errors import GenlabError

LETTERS = list(string.ascii_lowercase)
VOCAB = {token: index for index, token in enumerate(LETTERS + [f"{c}</w>" for c in LETTERS]
                                                     + ["<|startoftext|>", "<|endoftext|>"])}
PROMPTS = ["a red fox", "a blue boat"]  # letters only: the tiny vocabulary has no other symbols
ACTIONS = {0: "running", 1: "playing guitar", 2: "swimming"}
OBJECTS = {0: "N/A", 1: "person", 2: "book"}


def tiny_clip_config(hidden_act: str = "quick_gelu", layers: int = 2) -> CLIPConfig:
    shared = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=layers, num_attention_heads=2,
                  hidden_act=hidden_act)
    return CLIPConfig(text_config=dict(vocab_size=len(VOCAB), max_position_embeddings=16, bos_token_id=52,
                                       eos_token_id=53, pad_token_id=53, **shared),
                      vision_config=dict(image_size=32, patch_size=8, **shared), projection_dim=16)


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clip_tokenizer")
    CLIPTokenizer(vocab=VOCAB, merges=[]).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory, tokenizer_dir):
    """A tiny CLIPModel with its tokenizer, as a hub CLIP folder."""
    folder = tmp_path_factory.mktemp("clip")
    torch.manual_seed(0)
    CLIPModel(tiny_clip_config()).save_pretrained(folder)
    CLIPTokenizer.from_pretrained(tokenizer_dir).save_pretrained(folder)
    return str(folder)


def random_mlp_state(embed_dim: int = 16) -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    return {key: torch.randn_like(value) * 0.1 for key, value in AestheticMLP(embed_dim).state_dict().items()}


@pytest.fixture(scope="module")
def mlp_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("aesthetic") / "sac+logos+ava1-tiny-linearMSE.pth"
    torch.save(random_mlp_state(), path)
    return str(path)


def open_clip_state_dict(model: CLIPModel) -> dict[str, torch.Tensor]:
    """The inverse of the converter, written independently: a CLIPModel in open_clip's layout."""
    hf = model.state_dict()
    out = {
        "visual.conv1.weight": hf["vision_model.embeddings.patch_embedding.weight"],
        "visual.class_embedding": hf["vision_model.embeddings.class_embedding"],
        "visual.positional_embedding": hf["vision_model.embeddings.position_embedding.weight"],
        "visual.proj": hf["visual_projection.weight"].T,
        "token_embedding.weight": hf["text_model.embeddings.token_embedding.weight"],
        "positional_embedding": hf["text_model.embeddings.position_embedding.weight"],
        "text_projection": hf["text_projection.weight"].T,
        "logit_scale": hf["logit_scale"],
        "attn_mask": torch.full((16, 16), float("-inf")).triu(1),  # saved by older open_clip versions
    }
    norms = {"visual.ln_pre": "vision_model.pre_layrnorm", "visual.ln_post": "vision_model.post_layernorm",
             "ln_final": "text_model.final_layer_norm"}
    block = {"ln_1": "layer_norm1", "ln_2": "layer_norm2", "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2",
             "attn.out_proj": "self_attn.out_proj"}
    towers = {"visual.transformer.resblocks": "vision_model.encoder.layers",
              "transformer.resblocks": "text_model.encoder.layers"}
    for kind in ("weight", "bias"):
        out.update({f"{ours}.{kind}": hf[f"{theirs}.{kind}"] for ours, theirs in norms.items()})
        for ours, theirs in towers.items():
            for layer in range(model.config.vision_config.num_hidden_layers):
                source, target = f"{theirs}.{layer}", f"{ours}.{layer}"
                out[f"{target}.attn.in_proj_{kind}"] = torch.cat(
                    [hf[f"{source}.self_attn.{name}_proj.{kind}"] for name in "qkv"])
                out.update({f"{target}.{o}.{kind}": hf[f"{source}.{t}.{kind}"] for o, t in block.items()})
    return {key: value.clone() for key, value in out.items()}


@pytest.fixture(scope="module")
def hps_model():
    torch.manual_seed(2)
    return CLIPModel(tiny_clip_config("gelu")).eval()


@pytest.fixture(scope="module")
def hps_checkpoint(tmp_path_factory, hps_model):
    """An HPSv2-style checkpoint: open_clip keys under "state_dict", with a DDP "module." prefix."""
    path = tmp_path_factory.mktemp("hps") / "HPS_v2_compressed.pt"
    state = {f"module.{key}": value for key, value in open_clip_state_dict(hps_model).items()}
    torch.save({"state_dict": state, "epoch": 1}, path)
    return str(path)


@pytest.fixture(scope="module")
def videomae_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("videomae")
    torch.manual_seed(3)
    config = VideoMAEConfig(image_size=16, patch_size=8, num_frames=4, tubelet_size=2, hidden_size=32,
                            num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                            id2label=ACTIONS, label2id={name: index for index, name in ACTIONS.items()})
    VideoMAEForVideoClassification(config).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def vjepa_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vjepa2")
    torch.manual_seed(4)
    config = VJEPA2Config(patch_size=8, crop_size=16, frames_per_clip=4, tubelet_size=2, hidden_size=32,
                          num_attention_heads=2, num_hidden_layers=2, mlp_ratio=2.0, pred_hidden_size=32,
                          pred_num_attention_heads=2, pred_num_hidden_layers=2, pred_mlp_ratio=2.0,
                          pred_num_mask_tokens=2, pred_zero_init_mask_tokens=False, num_pooler_layers=1)
    VJEPA2Model(config).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def yolos_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("yolos")
    torch.manual_seed(5)
    config = YolosConfig(image_size=[32, 32], patch_size=8, hidden_size=32, num_hidden_layers=2,
                         num_attention_heads=2, intermediate_size=64, num_detection_tokens=5,
                         id2label=OBJECTS, label2id={name: index for index, name in OBJECTS.items()})
    YolosForObjectDetection(config).save_pretrained(folder)
    return str(folder)


@pytest.fixture
def load(clip_dir, tokenizer_dir, mlp_path, hps_checkpoint, videomae_dir, vjepa_dir, yolos_dir):
    """``load(name, **options)``: the zoo reward ``name`` built from the tiny saved models."""
    builders = {
        "aesthetic": lambda **o: AestheticReward.from_pretrained(clip_dir, mlp_path=mlp_path, **o),
        "clip-score": lambda **o: ClipScoreReward.from_pretrained(clip_dir, **o),
        "pickscore": lambda **o: PickScoreReward.from_pretrained(clip_dir, tokenizer_path=tokenizer_dir, **o),
        "hps": lambda **o: HPSReward.from_pretrained(hps_checkpoint, tokenizer_path=tokenizer_dir,
                                                     config=tiny_clip_config("gelu"), **o),
        "videomae-action": lambda **o: VideoMAEActionReward.from_pretrained(videomae_dir, **o),
        "vjepa-temporal": lambda **o: VJEPA2TemporalReward.from_pretrained(vjepa_dir, **o),
        "object-removal": lambda **o: ObjectRemovalReward.from_pretrained(yolos_dir, size=24, **o),
    }
    return lambda name, **options: builders[name](**options)


ZOO = {**clip_rewards.ZOO, **video_rewards.ZOO, **detection.ZOO}
TEXT_REWARDS = ["clip-score", "pickscore", "hps"]


def samples_for(reward) -> torch.Tensor:
    """Random samples in [-1, 1]: non-square images [2, 3, 24, 40] or videos [2, 5, 3, 20, 24]."""
    torch.manual_seed(6)
    shape = (2, 3, 24, 40) if reward.modality == "image" else (2, 5, 3, 20, 24)
    return torch.rand(shape) * 2 - 1


def prompts_for(reward):
    return PROMPTS if reward.needs == "prompts" else None


def test_zoo_names_and_entries():
    assert set(clip_rewards.ZOO) == {"aesthetic", "clip-score", "pickscore", "hps"}
    assert set(video_rewards.ZOO) == {"videomae-action", "vjepa-temporal"}
    assert set(detection.ZOO) == {"object-removal"}
    assert ZOO["pickscore"].default_path == "yuvalkirstain/PickScore_v1"
    assert ZOO["hps"].default_path == "xswu/HPSv2"
    for entry in ZOO.values():
        assert entry.summary and entry.default_path and callable(entry.build)


@pytest.mark.parametrize("name", list(ZOO))
def test_reward_scores_are_differentiable_and_frozen(load, name):
    reward = load(name)
    assert reward.name == name
    assert not any(parameter.requires_grad for parameter in reward.parameters())
    assert not reward.training
    samples = samples_for(reward).requires_grad_()
    scores = reward(samples, prompts_for(reward))
    assert scores.shape == (2,) and scores.dtype == torch.float32
    assert torch.isfinite(scores).all()
    scores.sum().backward()
    assert torch.isfinite(samples.grad).all() and samples.grad.abs().sum() > 0


@pytest.mark.parametrize("name", list(ZOO))
def test_wrong_rank_and_channels_are_clear_errors(load, name):
    reward = load(name)
    samples = samples_for(reward)
    with pytest.raises(GenlabError, match="reward scores"):
        reward(samples[0], prompts_for(reward))
    with pytest.raises(GenlabError, match="channels"):
        reward(samples[..., :1, :, :], prompts_for(reward))


@pytest.mark.parametrize("name", TEXT_REWARDS)
def test_text_rewards_need_prompts_not_labels(load, name):
    reward = load(name)
    images = samples_for(reward)
    labels = torch.zeros(2, dtype=torch.long)
    with pytest.raises(GenlabError, match="needs one prompt per sample"):
        reward(images)
    with pytest.raises(GenlabError, match="class labels"):
        reward(images, labels=labels)
    with pytest.raises(GenlabError, match="not class labels"):
        reward(images, PROMPTS, labels)
    with pytest.raises(GenlabError, match="2 prompts"):
        reward(images, PROMPTS[:1])


def test_clip_score_is_scaled_cosine_and_follows_the_prompt(load, clip_dir):
    reward = load("clip-score")
    images = samples_for(reward)
    model = CLIPModel.from_pretrained(clip_dir).eval()
    tokens = CLIPTokenizer.from_pretrained(clip_dir)(PROMPTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        text = F.normalize(model.get_text_features(**tokens).pooler_output, dim=-1)
        expected = model.logit_scale.exp() * (clip_image_embeddings(model, images) * text).sum(-1)
        assert torch.allclose(reward(images, PROMPTS), expected, atol=1e-5)
        assert not torch.allclose(reward(images, PROMPTS[::-1]), expected, atol=1e-3)


def test_hps_open_clip_round_trip_gives_identical_embeddings(load, hps_model, tokenizer_dir):
    reward = load("hps")
    images = samples_for(reward)
    tokens = CLIPTokenizer.from_pretrained(tokenizer_dir)(PROMPTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        image = clip_image_embeddings(hps_model, images)
        assert torch.allclose(clip_image_embeddings(reward.model, images), image, atol=1e-5)
        text = hps_model.get_text_features(**tokens).pooler_output
        assert torch.allclose(reward.model.get_text_features(**tokens).pooler_output, text, atol=1e-5)
        cosine = (image * F.normalize(text, dim=-1)).sum(-1)
        assert torch.allclose(reward(images, PROMPTS), cosine, atol=1e-5)  # unscaled, as HPSv2 reports
    assert reward.model.config.vision_config.hidden_act == "gelu"


def open_clip_forward(state: dict[str, torch.Tensor], pixels: torch.Tensor, text: torch.Tensor,
                      heads: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Image and text features as open_clip computes them, straight from its state-dict layout:
    nn.MultiheadAttention on the fused in_proj, exact GELU, ln_post before taking the class token,
    ``x @ proj``, argmax (end-of-text) pooling of the text."""

    def norm(x, name):
        return F.layer_norm(x, x.shape[-1:], state[f"{name}.weight"], state[f"{name}.bias"])

    def blocks(x, prefix, mask=None):
        layer = 0
        while f"{prefix}.{layer}.ln_1.weight" in state:
            block = f"{prefix}.{layer}"
            attention = torch.nn.MultiheadAttention(x.shape[-1], heads, batch_first=True)
            attention.load_state_dict({key.removeprefix(f"{block}.attn."): value
                                       for key, value in state.items() if key.startswith(f"{block}.attn.")})
            h = norm(x, f"{block}.ln_1")
            x = x + attention(h, h, h, attn_mask=mask, need_weights=False)[0]
            h = F.linear(norm(x, f"{block}.ln_2"), state[f"{block}.mlp.c_fc.weight"],
                                           state[f"{block}.mlp.c_fc.bias"])
            x = x + F.linear(F.gelu(h), state[f"{block}.mlp.c_proj.weight"],
                                               state[f"{block}.mlp.c_proj.bias"])
            layer += 1
        return x

    patch = state["visual.conv1.weight"].shape[-1]
    x = F.conv2d(pixels, state["visual.conv1.weight"], stride=patch).flatten(2).transpose(1, 2)
    x = torch.cat([state["visual.class_embedding"].expand(x.shape[0], 1, -1), x], dim=1)
    x = norm(x + state["visual.positional_embedding"], "visual.ln_pre")
    x = blocks(x, "visual.transformer.resblocks")
    image = norm(x, "visual.ln_post")[:, 0] @ state["visual.proj"]
    x = state["token_embedding.weight"][text] + state["positional_embedding"][:text.shape[1]]
    causal = state["attn_mask"][:text.shape[1], :text.shape[1]]
    x = norm(blocks(x, "transformer.resblocks", causal), "ln_final")
    return image, x[torch.arange(text.shape[0]), text.argmax(-1)] @ state["text_projection"]


def test_hps_conversion_matches_open_clip_computation(load, hps_model, tokenizer_dir):
    reward = load("hps")
    images = samples_for(reward)
    tokens = CLIPTokenizer.from_pretrained(tokenizer_dir)(PROMPTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        image, text = open_clip_forward(open_clip_state_dict(hps_model), clip_rewards.clip_pixels(images, 32),
                                        tokens.input_ids)
        assert torch.allclose(clip_image_embeddings(reward.model, images),
                              F.normalize(image, dim=-1), atol=1e-5)
        assert torch.allclose(reward.model.get_text_features(**tokens).pooler_output, text, atol=1e-5)


def test_open_clip_converter_rejects_foreign_keys_and_mismatched_configs(hps_model):
    state = open_clip_state_dict(hps_model)
    converted = clip_state_dict_from_open_clip(state, tiny_clip_config("gelu"))
    assert converted.keys() == {key for key in hps_model.state_dict()}
    assert torch.equal(converted["text_model.encoder.layers.1.self_attn.k_proj.weight"],
                       hps_model.text_model.encoder.layers[1].self_attn.k_proj.weight)
    with pytest.raises(GenlabError, match="unexpected key 'visual.attn_pool.query'"):
        clip_state_dict_from_open_clip({**state, "visual.attn_pool.query": torch.zeros(1)},
                                       tiny_clip_config("gelu"))
    with pytest.raises(GenlabError, match="does not match the CLIP config.*missing"):
        clip_state_dict_from_open_clip(state, tiny_clip_config("gelu", layers=3))


def test_aesthetic_mlp_loads_the_released_layout(load, clip_dir, mlp_path, tmp_path):
    state = torch.load(mlp_path, weights_only=True)
    assert sorted(state) == sorted(f"layers.{index}.{kind}" for index in (0, 2, 4, 6, 7)
                                   for kind in ("weight", "bias"))
    reward = load("aesthetic")
    images = samples_for(reward)
    embeddings = clip_image_embeddings(CLIPModel.from_pretrained(clip_dir).eval(), images)
    linear = embeddings
    for index in (0, 2, 4, 6, 7):
        linear = linear @ state[f"layers.{index}.weight"].T + state[f"layers.{index}.bias"]
    with torch.no_grad():
        assert torch.allclose(reward(images), linear.squeeze(-1), atol=1e-5)
    save_file(state, tmp_path / "mlp.safetensors")
    from_safetensors = AestheticReward.from_pretrained(clip_dir, mlp_path=str(tmp_path / "mlp.safetensors"))
    with torch.no_grad():
        assert torch.allclose(from_safetensors(images), reward(images))


def test_aesthetic_mlp_width_must_follow_clip(clip_dir, tmp_path):
    torch.save(random_mlp_state(embed_dim=768), tmp_path / "l14.pth")
    with pytest.raises(GenlabError, match="aesthetic MLP.*does not fit"):
        AestheticReward.from_pretrained(clip_dir, mlp_path=str(tmp_path / "l14.pth"))
    with pytest.raises(GenlabError, match="could not read the aesthetic MLP weights"):
        AestheticReward.from_pretrained(clip_dir, mlp_path=str(tmp_path / "missing.pth"))


@pytest.mark.parametrize("name", [name for name in ZOO if name not in ("pickscore", "hps")])
def test_missing_folder_is_a_clear_error(name, tmp_path):
    missing = str(tmp_path / "no-such-model")
    with pytest.raises(GenlabError, match="could not load.*no-such-model"):
        ZOO[name].build(missing)


def test_missing_hps_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(GenlabError, match="HPSv2 checkpoint.*no-such-repo"):
        HPSReward.from_pretrained(str(tmp_path / "no-such-repo"), config=tiny_clip_config("gelu"))


@pytest.mark.parametrize("name", ["videomae-action", "object-removal"])
def test_target_classes_by_name_or_index(load, name):
    labels = ACTIONS if name == "videomae-action" else OBJECTS
    reward = load(name, target=labels[2].upper())
    assert reward.target == 2 and load(name, target=1).target == 1 and load(name).target is None
    hint = "did you mean 'playing guitar'" if name == "videomae-action" else "labels include 'N/A', 'person'"
    with pytest.raises(GenlabError, match=f"no class 'guitar' \\(3 classes; {hint}"):
        load(name, target="guitar")
    with pytest.raises(GenlabError, match="out of range"):
        load(name, target=len(labels))


def test_videomae_target_is_the_class_probability(load):
    reward = load("videomae-action", target="swimming")
    videos = samples_for(reward)
    config = reward.model.config
    with torch.no_grad():
        pixels = video_rewards.video_pixels(videos, config.num_frames, config.image_size)
        probabilities = reward.model(pixel_values=pixels).logits.softmax(-1)
        assert torch.allclose(reward(videos), probabilities[:, 2])
        assert torch.allclose(load("videomae-action")(videos), probabilities.max(-1).values)


def test_object_removal_is_one_minus_the_most_confident_target_detection(load):
    reward = load("object-removal", target="book")
    images = samples_for(reward)
    with torch.no_grad():
        scores = reward(images)
        # The images' shortest side already is the reward's size (24): no resize, only normalisation.
        pixels = clip_rewards.normalise((images + 1) / 2, clip_rewards.IMAGENET_MEAN,
                                        clip_rewards.IMAGENET_STD)
        probabilities = reward.model(pixel_values=pixels).logits.softmax(-1)
    assert torch.allclose(scores, 1 - probabilities[..., 2].max(-1).values)
    assert ((scores >= 0) & (scores <= 1)).all()


def test_resample_frames_keeps_ends_and_spreads_uniformly():
    videos = torch.arange(7.0).view(1, 7, 1, 1, 1)
    assert resample_frames(videos, 4).flatten().tolist() == [0.0, 2.0, 4.0, 6.0]
    assert resample_frames(videos[:, :2], 4).flatten().tolist() == [0.0, 0.0, 1.0, 1.0]


def test_vjepa_predicts_the_second_half_from_the_first_only(load):
    reward = load("vjepa-temporal")
    videos = samples_for(reward)[:, :4]
    with pytest.raises(GenlabError, match="more than 2 frames"):
        reward(videos[:, :2])
    later = videos.clone()
    later[:, 2:] = torch.rand_like(later[:, 2:]) * 2 - 1
    predictions = []
    reward.model.predictor.register_forward_hook(
        lambda module, args, output: predictions.append(output.last_hidden_state))
    with torch.no_grad():
        scores = reward(videos), reward(later)
    tokens_per_tubelet = (16 // 8) ** 2
    assert predictions[0].shape == (2, tokens_per_tubelet, 32)  # the second of two tubelets
    assert torch.equal(predictions[0], predictions[1])  # the context never sees the target frames
    assert not torch.allclose(*scores)  # but the targets do
