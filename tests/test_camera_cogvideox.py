"""Camera models on a CogVideoX base from a local diffusers folder: saved as a reference and reloaded to the
same output, rotary embeddings as CogVideoXPipeline makes them, prompts, and `genlab sample camera` end to
end. The folders hold a tiny random transformer (CogVideoX's shipped zero-terminal-SNR scheduler), VAE and
T5, written with ``save_pretrained`` as real checkpoints are."""

import json

import numpy as np
import pytest
import torch
from diffusers import (
    AutoencoderKLCogVideoX,
    CogVideoXDDIMScheduler,
    CogVideoXPipeline,
    CogVideoXTransformer3DModel,
)
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast, T5Config, T5EncoderModel

from genlab.camera.cogvideox import CogVideoXDenoiser, clip_geometry, prompt_embeddings
from genlab.camera.controlnet import CameraControlNet
from genlab.camera.model import (
    CameraBlindDenoiser,
    ControlNetCameraDenoiser,
    load_camera_model,
    save_camera_model,
)
from genlab.core.denoiser import DiffusersDenoiser
from genlab.core.images import load_video
from genlab.errors import GenlabError
from test_camera_controlnet import COGVIDEOX, randomise, video_base

# CogVideoX-2b's scheduler/scheduler_config.json (zero terminal SNR, v-prediction, trailing timesteps)
COGVIDEOX_SCHEDULER = {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012,
                       "clip_sample": False, "num_train_timesteps": 1000, "prediction_type": "v_prediction",
                       "rescale_betas_zero_snr": True, "set_alpha_to_one": True, "snr_shift_scale": 3.0,
                       "steps_offset": 0, "timestep_spacing": "trailing"}
WORDS = ["<pad>", "</s>", "<unk>", "a", "cat", "dog", "walks"]


def save_tiny_t5(folder) -> None:
    """A one-layer T5 encoder and a word-level tokenizer (built offline) in ``text_encoder/`` and ``tokenizer/``."""
    tokenizer = Tokenizer(models.WordLevel({word: i for i, word in enumerate(WORDS)}, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", eos_token="</s>",
                            unk_token="<unk>").save_pretrained(folder / "tokenizer")
    config = T5Config(vocab_size=len(WORDS), d_model=COGVIDEOX["text_embed_dim"], d_kv=4, d_ff=16, num_layers=1,
                      num_heads=2)
    T5EncoderModel(config).save_pretrained(folder / "text_encoder")


def make_cogvideox_folder(folder, vae: bool = True, text: bool = False, **transformer):
    """A tiny CogVideoX folder: transformer/ and scheduler/, optionally vae/ (8× spatial, 4× temporal) and T5."""
    torch.manual_seed(0)
    CogVideoXTransformer3DModel(**{**COGVIDEOX, **transformer}).save_pretrained(folder / "transformer")
    CogVideoXDDIMScheduler(**COGVIDEOX_SCHEDULER).save_pretrained(folder / "scheduler")
    if vae:
        AutoencoderKLCogVideoX(block_out_channels=(8, 8, 8, 8), latent_channels=COGVIDEOX["in_channels"],
                               layers_per_block=1, norm_num_groups=2).save_pretrained(folder / "vae")
    if text:
        save_tiny_t5(folder)
    return folder


def camera_model(folder, variant: str = "controlnet"):
    base = CogVideoXDenoiser.from_folder(folder)
    if variant == "none":
        return CameraBlindDenoiser(base)
    branch = randomise(CameraControlNet.for_backbone(base.model, hidden_size=16, num_heads=2))
    return ControlNetCameraDenoiser(base, branch, (0.2, 1.0))


@pytest.mark.parametrize("variant", ["controlnet", "none"])
def test_cogvideox_camera_model_saves_a_reference_and_reloads_to_the_same_output(tmp_path, variant):
    folder = make_cogvideox_folder(tmp_path / "cogvideox", vae=False)
    model = camera_model(folder, variant)
    save_camera_model(model, tmp_path / "camera")
    info = json.loads((tmp_path / "camera" / "genlab.json").read_text())
    assert info["cogvideox"] == {"folder": str(folder.resolve()), "prediction_type": "v_prediction",
                                 "torch_dtype": "float32"}
    assert not (tmp_path / "camera" / "base").exists()  # the transformer is not copied
    loaded = load_camera_model(tmp_path / "camera")
    assert isinstance(loaded.base, CogVideoXDenoiser) and loaded.variant == variant
    torch.manual_seed(1)
    x, sigma = torch.randn(2, 3, 4, 8, 8), torch.tensor([0.5, 2.0])
    cond = {"plucker": torch.randn(2, 3, 6, 8, 8), "encoder_hidden_states": torch.randn(2, 5, 12)}
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, sigma, **cond), model.eval()(x, sigma, **cond), rtol=0, atol=0)


def test_camera_model_on_a_plain_diffusers_denoiser_cannot_be_saved(tmp_path):
    folder = make_cogvideox_folder(tmp_path / "cogvideox", vae=False)
    base = CogVideoXDenoiser.from_folder(folder)
    plain = DiffusersDenoiser(base.model, CogVideoXDDIMScheduler(**COGVIDEOX_SCHEDULER))
    with pytest.raises(GenlabError, match="CogVideoXDenoiser.from_folder"):
        save_camera_model(CameraBlindDenoiser(plain), tmp_path / "camera")
    with pytest.raises(GenlabError, match="lacks transformer/, scheduler/"):
        CogVideoXDenoiser.from_folder(tmp_path)


def test_rotary_embeddings_match_the_cogvideox_pipeline(tmp_path):
    """CogVideoX 1.0 5B-style RoPE: the denoiser makes the pipeline's embeddings and the transformer uses them."""
    folder = make_cogvideox_folder(tmp_path, vae=False, attention_head_dim=16, use_rotary_positional_embeddings=True)
    base = CogVideoXDenoiser.from_folder(folder)
    x = torch.randn(1, 3, 4, 8, 8)
    pipeline = CogVideoXPipeline(tokenizer=None, text_encoder=None, vae=None, transformer=base.model,
                                 scheduler=CogVideoXDDIMScheduler(**COGVIDEOX_SCHEDULER))
    theirs = pipeline._prepare_rotary_positional_embeddings(8 * 8, 8 * 8, 3, "cpu")  # no VAE: 8× spatial
    for ours, reference in zip(base.rotary_embedding(x), theirs, strict=True):
        torch.testing.assert_close(ours, reference)
    sigma, text = torch.tensor([1.0]), torch.randn(1, 5, 12)
    with torch.no_grad():
        ours = base(x, sigma, encoder_hidden_states=text)
        torch.testing.assert_close(ours, base(x, sigma, encoder_hidden_states=text, image_rotary_emb=theirs))
        assert not torch.allclose(ours, base(x, sigma, encoder_hidden_states=text, image_rotary_emb=None))


def test_prompt_embeddings_come_from_the_folders_t5_or_are_zeros(tmp_path):
    with_text = CogVideoXDenoiser.from_folder(make_cogvideox_folder(tmp_path / "text", vae=False, text=True))
    with torch.no_grad():
        cat, dog, empty = prompt_embeddings(with_text, ["a cat", "a dog", ""])
    assert cat.shape == (5, 12) and not torch.equal(cat, dog) and empty.abs().sum() > 0
    without = CogVideoXDenoiser.from_folder(make_cogvideox_folder(tmp_path / "plain", vae=False))
    assert torch.equal(prompt_embeddings(without, [""]), torch.zeros(1, 5, 12))
    with pytest.raises(GenlabError, match="needs a text encoder"):
        prompt_embeddings(without, ["a cat"])


def test_sample_camera_cli_writes_a_clip_of_a_latent_cogvideox_camera_model(tmp_path, run_cli):
    folder = make_cogvideox_folder(tmp_path / "cogvideox")
    save_camera_model(camera_model(folder), tmp_path / "camera")
    geometry = clip_geometry(load_camera_model(tmp_path / "camera").base)
    assert (geometry.frames, geometry.height, geometry.width) == (9, 64, 64)  # 3 latent frames of 8×8
    code, out, err = run_cli("sample", "camera", "--model", str(tmp_path / "camera"), "--trajectory", "pan",
                             "--sampling-steps", "2", "--out", str(tmp_path / "clip.gif"))
    assert code == 0, err
    assert "9 frames (controlnet model on CogVideoX" in out
    frames, _ = load_video(tmp_path / "clip.gif")
    assert frames.shape == (9, 3, 128, 128)  # 64 px frames shown at 2×
    code, _, err = run_cli("sample", "camera", "--model", str(tmp_path / "camera"), "--prompt", "a cat",
                           "--out", str(tmp_path / "prompt.gif"))
    assert code == 2 and "needs a text encoder" in err
    np.save(tmp_path / "poses.npy", np.tile(np.eye(4), (3, 1, 1)))
    code, _, err = run_cli("sample", "camera", "--model", str(tmp_path / "camera"), "--poses",
                           str(tmp_path / "poses.npy"), "--out", str(tmp_path / "poses.gif"))
    assert code == 2 and "[9, 4, 4]" in err


def test_sample_camera_cli_with_prompt_and_guidance_on_a_pixel_cogvideox(tmp_path, run_cli):
    """No VAE: the transformer makes RGB frames; the prompt goes through the folder's T5, with CFG."""
    folder = make_cogvideox_folder(tmp_path / "cogvideox", vae=False, text=True, in_channels=3, out_channels=3)
    save_camera_model(camera_model(folder), tmp_path / "camera")
    code, out, err = run_cli("sample", "camera", "--model", str(tmp_path / "camera"), "--prompt", "a cat walks",
                             "--guidance-scale", "3", "--sampling-steps", "2", "--out", str(tmp_path / "clip.mp4"))
    assert code == 0, err
    frames, _ = load_video(tmp_path / "clip.mp4")
    assert frames.shape == (3, 3, 128, 128)  # 3 frames of 8 px shown at 16×


def test_prompt_is_rejected_for_a_camera_model_on_genlab_video_dit(tmp_path, run_cli):
    save_camera_model(CameraBlindDenoiser(video_base()), tmp_path / "camera")
    code, _, err = run_cli("sample", "camera", "--model", str(tmp_path / "camera"), "--prompt", "a cat")
    assert code == 2 and "only to camera models on a CogVideoX base" in err
