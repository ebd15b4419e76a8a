"""Frozen CLIP (open_clip) behind one loader, with the reduced subword vocabulary and keyword encoding.

§1.3, §4.4 and §4.5 of docs/reference.md; introduced in notebooks/01_backbones.ipynb.
"""
from __future__ import annotations

import json
import warnings
import zipfile
from pathlib import Path

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from torch import nn

from speechclip.corpora import WeightsError

__all__ = ["ClipEncoder", "load_clip", "openai_weights"]

_WEIGHT_SUFFIXES = (".bin", ".pt", ".pth", ".safetensors", ".npz")
# Captions whose token ids tokenize() keeps: every validation tokenizes the same dev captions again, and open_clip's
# text cleaning costs about half a millisecond a caption. 50,000 rows of 77 ids are about 30 MB.
TOKEN_MEMO = 50_000


class ClipEncoder(nn.Module):
    """Frozen CLIP: L2-normalised image/text embeddings, reduced vocabulary, and keywords through the text tower.

    Pitfall 2: the token-embedding table is never replaced. The reduced vocabulary is an index into it
    (``vocab_ids``) with a copy of its rows (``vocab_embeds``), so ``encode_text`` keeps working on real text,
    and EOT positions are looked up by id rather than by argmax.
    """

    def __init__(self, model: nn.Module, preprocess, tokenizer):
        super().__init__()
        self.model = model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.sot_id = int(tokenizer.sot_token_id)
        self.eot_id = int(tokenizer.eot_token_id)
        self.context_length = int(model.context_length)
        self.token_dim = int(model.token_embedding.weight.shape[1])
        self.embed_dim = int(model.text_projection.shape[1])
        self.register_buffer("vocab_ids", torch.empty(0, dtype=torch.long), persistent=False)
        self.register_buffer("vocab_embeds", torch.empty(0, self.token_dim), persistent=False)
        self.register_buffer("special_vocab_positions", torch.empty(0, dtype=torch.long), persistent=False)
        self.vocab_counts = torch.empty(0, dtype=torch.long)
        self._token_rows: dict[str, torch.Tensor] = {}  # caption -> its (77,) ids, see TOKEN_MEMO

    def train(self, mode: bool = True):
        """CLIP stays in eval mode: it is frozen in every configuration (§1.5)."""
        super().train(mode)
        self.model.eval()
        return self

    def tokenize(self, texts) -> torch.Tensor:
        """Captions -> (B, 77) CLIP BPE ids with SOT/EOT and zero padding (remembered, up to TOKEN_MEMO captions)."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        rows = self._token_rows
        missing = list(dict.fromkeys(t for t in texts if t not in rows))
        if not texts or (missing and len(rows) + len(missing) > TOKEN_MEMO):
            return self.tokenizer(texts)
        if missing:
            rows.update(zip(missing, self.tokenizer(missing)))
        return torch.stack([rows[t] for t in texts])

    @torch.no_grad()
    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) preprocessed images -> (B, D) L2-normalised."""
        return F.normalize(self.model.encode_image(images), dim=-1)

    @torch.no_grad()
    def encode_text(self, texts) -> torch.Tensor:
        """Captions (list of str) or (B, 77) ids -> (B, D) L2-normalised, with the full vocabulary."""
        ids = texts if torch.is_tensor(texts) else self.tokenize(texts)
        ids = ids.to(self.model.token_embedding.weight.device)
        eot_pos = (ids == self.eot_id).int().argmax(dim=-1)
        return self.encode_token_embeds(self.model.token_embedding(ids), eot_pos)

    def encode_token_embeds(self, token_embeds: torch.Tensor, eot_pos: torch.Tensor) -> torch.Tensor:
        """(B, n, D_t) token embeddings with EOT at eot_pos (B,) -> (B, D) L2-normalised (§4.5).

        Only positions up to the last EOT are run: the causal mask makes later positions irrelevant to EOT.
        """
        n = int(eot_pos.max()) + 1
        x = token_embeds[:, :n] + self.model.positional_embedding[:n].to(token_embeds.dtype)
        x = self.model.transformer(x, attn_mask=self.model.attn_mask[:n, :n])
        x = self.model.ln_final(x)
        x = x[torch.arange(x.shape[0], device=x.device), eot_pos]  # (B, D_t) at each EOT
        return F.normalize(x @ self.model.text_projection, dim=-1)

    def encode_keywords(self, keyword_embeds: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(B, K, D_t) keyword embeddings -> (B, D): [SOT, kw_1..kw_n, EOT] through the frozen text tower (§4.5).

        n = K, or per-sample ``lengths`` (B,) for variable-length (CIF) keywords; gradients reach the keywords.
        """
        B, K, _ = keyword_embeds.shape
        table = self.model.token_embedding.weight
        n = torch.full((B,), K, device=keyword_embeds.device) if lengths is None else lengths.to(keyword_embeds.device)
        sot = table[self.sot_id].expand(B, 1, -1).to(keyword_embeds.dtype)
        tail = torch.zeros(B, 1, self.token_dim, dtype=keyword_embeds.dtype, device=keyword_embeds.device)
        x = torch.cat([sot, keyword_embeds, tail], dim=1)  # (B, K+2, D_t)
        eot_slot = torch.arange(K + 2, device=x.device)[None] == (n + 1)[:, None]  # (B, K+2)
        x = torch.where(eot_slot[..., None], table[self.eot_id].to(x.dtype), x)
        return self.encode_token_embeds(x, n.long() + 1)

    def set_vocab(self, captions) -> None:
        """Reduced vocabulary (§4.4): ids used by the captions (incl. 0, SOT, EOT), by count desc, ties by id."""
        texts = [c.strip().rstrip(".").strip() for c in captions]  # the reference strips the trailing "."
        ids = torch.cat([self.tokenize(texts[i:i + 4096]) for i in range(0, len(texts), 4096)])
        counts = torch.bincount(ids.flatten(), minlength=int(self.model.token_embedding.weight.shape[0]))
        used = torch.nonzero(counts).flatten().numpy()
        order = np.lexsort((used, -counts[used].numpy()))  # primary key: count descending; then id ascending
        self.set_vocab_ids(used[order])
        self.vocab_counts = counts[self.vocab_ids.cpu()]

    def set_vocab_ids(self, vocab_ids) -> None:
        """Restore a saved reduced vocabulary (original ids in their saved order), e.g. from a checkpoint.

        Special positions (padding 0, SOT, EOT) are looked up, never assumed (pitfall 1).
        """
        device = self.model.token_embedding.weight.device
        self.vocab_ids = torch.as_tensor(vocab_ids, dtype=torch.long, device=device)
        self.vocab_embeds = self.model.token_embedding.weight[self.vocab_ids].detach().clone()
        position = {int(t): i for i, t in enumerate(self.vocab_ids.tolist())}
        self.special_vocab_positions = torch.tensor(
            [position[0], position[self.sot_id], position[self.eot_id]], dtype=torch.long, device=device)

    def decode_vocab(self, positions) -> list[str]:
        """Reduced-vocabulary positions -> their subword strings (e.g. "dog")."""
        positions = torch.as_tensor(positions).flatten().tolist()
        ids = self.vocab_ids.cpu()[positions].tolist()
        return [self.tokenizer.decoder[i].replace("</w>", "") for i in ids]


def _missing_error(name: str, pretrained: str, err: Exception) -> FileNotFoundError:
    hub = (open_clip.get_pretrained_cfg(name, pretrained) or {}).get("hf_hub", "").strip("/") or "<repo>"
    return FileNotFoundError(
        f"Could not load CLIP '{name}' with pretrained='{pretrained}': the weights are not in the local cache and "
        f"the model hosts are unreachable from here ({err}). Fetch them on a machine with internet, e.g.\n"
        f"    huggingface-cli download {hub} open_clip_pytorch_model.bin open_clip_config.json "
        f"--local-dir checkpoints/{hub.split('/')[-1]}\n"
        f"copy the folder here and set clip.pretrained to it or to its open_clip_pytorch_model.bin (keeping "
        f"clip.name='{name}'; the folder's name and config tell OpenAI weights, which need QuickGELU). "
        f"Offline, use clip.name='pocket' instead.")


def _named_openai(path: Path) -> bool:
    """A folder or file named like the hub's OpenAI repositories ("vit_base_patch32_clip_224.openai")."""
    return any(part.lower().endswith("openai") for part in (*path.parts, path.stem))


def openai_weights(name: str, pretrained: str) -> tuple[bool, str]:
    """Whether the weights are OpenAI's, which were trained with QuickGELU, and how that was told (§1.3).

    In order: the tag "openai"; a local file that is OpenAI's own TorchScript release (a zip holding code/ and
    constants.pkl, e.g. ViT-B-32.pt); an open_clip_config.json beside the file whose model_cfg says quick_gelu (a
    downloaded hub folder has one); a path part ending in "openai" (the hub repositories and their cache folders
    are named "timm/vit_base_patch32_clip_224.openai"). A state dict alone cannot tell: the activation has no
    weights. A folder given as clip.name or clip.pretrained gets QuickGELU from its config or, failing that, from
    such a name; an architecture whose name ends in "-quickgelu" carries the activation itself.
    """
    if pretrained == "openai":
        return True, "the 'openai' tag"
    path = Path(pretrained) if pretrained else None
    if path is None or not path.is_file() or name.endswith("-quickgelu"):
        return False, "not an OpenAI file"
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            if any(n.endswith("constants.pkl") or "/code/" in n for n in zf.namelist()):
                return True, "OpenAI's TorchScript release format"
    config = path.parent / "open_clip_config.json"
    said = json.loads(config.read_text()).get("model_cfg", {}).get("quick_gelu", False) if config.is_file() else None
    if said:
        return True, f"{config} (quick_gelu=true)"
    if _named_openai(path):
        return True, "a path part ending in 'openai'"
    if said is not None:
        return False, f"{config} (quick_gelu=false)"
    if open_clip.get_pretrained_cfg(name, "openai"):  # an architecture OpenAI released: the file may be theirs
        warnings.warn(f"{path}: cannot tell whether these {name} weights are OpenAI's (trained with QuickGELU); "
                      f"loading with GELU. If they are OpenAI's, set clip.name='{name}-quickgelu', or keep the "
                      "hub folder's open_clip_config.json beside the file.", stacklevel=3)
    return False, "no sign of OpenAI weights"


def _create(model_name: str, pretrained: str | None, random_init: bool, cache_dir, quick_gelu: bool = False):
    """open_clip.create_model_and_transforms; quick_gelu for OpenAI weights (openai_weights decides)."""
    model, _, preprocess = open_clip.create_model_and_transforms(
        model_name, pretrained=pretrained or None, load_weights=not random_init,
        force_quick_gelu=quick_gelu, cache_dir=cache_dir)
    return ClipEncoder(model, preprocess, open_clip.get_tokenizer(model_name))


def _broken(path: Path, err: Exception) -> WeightsError:
    why = " ".join(str(err).split())[:300]
    return WeightsError(f"{path}: CLIP weights that exist but do not load ({type(err).__name__}: {why}). A cut-short "
                        "copy is the usual cause: copy it again (a pocket cache under artifacts/pocket: delete it "
                        "to retrain). An open_clip folder needs open_clip_config.json and its weights file.")


def _check_clip_folder(folder: Path, random_init: bool) -> None:
    """open_clip loads a folder without weights as random weights with only a log line: refuse that here."""
    if not (folder / "open_clip_config.json").is_file():
        raise WeightsError(f"{folder}: no open_clip_config.json, so not an open_clip folder. Copy the whole folder "
                           "again, or set clip.pretrained to the weights file and clip.name to its architecture.")
    if not random_init and not any(p.suffix in (".safetensors", ".bin", ".pth") for p in folder.iterdir()):
        raise WeightsError(f"{folder}: open_clip_config.json but no weights file (*.safetensors, *.bin, *.pth); "
                           "open_clip would use random weights. Copy the weights file into the folder.")


def _load_local_dir(name: str, random_init: bool, cache_dir) -> ClipEncoder:
    folder = Path(name.removeprefix("local-dir:"))
    _check_clip_folder(folder, random_init)
    try:
        return _create(name, None, random_init, cache_dir, quick_gelu=_named_openai(folder))
    except Exception as err:  # json, safetensors and torch each raise their own type for a broken file
        raise _broken(folder, err) from err


def load_clip(cfg, random_init: bool = False, cache_dir=None, pocket_cfg=None, corpus_root=None,
              artifacts_dir=None) -> ClipEncoder:
    """Build the frozen ClipEncoder from ``cfg.name``/``cfg.pretrained``: open_clip name + tag, checkpoint, or "pocket".

    A folder (``cfg.name`` or ``cfg.pretrained``) holding ``open_clip_config.json`` + weights loads as open_clip's
    ``local-dir:``; "pocket" trains/caches one with ``pocket_cfg`` on ``corpus_root`` under ``artifacts_dir`` and
    loads its folder that way. ``cache_dir`` is open_clip's download cache. OpenAI weights get QuickGELU whether
    named by tag or given as a file (see openai_weights); a folder's config says so itself.
    """
    name, pretrained = str(cfg.name), str(cfg.pretrained or "")
    if name == "pocket":
        from speechclip import pocket
        from speechclip.config import PocketClipConfig
        pocket_cfg = pocket_cfg or PocketClipConfig()
        if random_init:
            from speechclip.pocket_clip import build_pocket_clip
            model, preprocess = build_pocket_clip(pocket_cfg)
            return ClipEncoder(model, preprocess, open_clip.get_tokenizer("ViT-B-32"))
        name = str(pocket.ensure_pocket_clip(pocket_cfg, corpus_root, artifacts_dir=artifacts_dir))
    elif pretrained and Path(pretrained).is_dir():
        name = pretrained
    if not name.startswith("local-dir:") and Path(name).is_dir():
        name = f"local-dir:{name}"
    if name.startswith("local-dir:"):
        return _load_local_dir(name, random_init, cache_dir)
    if not random_init and Path(pretrained).suffix in _WEIGHT_SUFFIXES and not Path(pretrained).is_file():
        raise FileNotFoundError(f"{pretrained}: no such weights file; set clip.pretrained to a file, a folder, or "
                                f"a tag such as 'openai'.")
    quick_gelu = not random_init and openai_weights(name, pretrained)[0]
    try:
        return _create(name, None if random_init else pretrained, random_init, cache_dir, quick_gelu)
    except Exception as err:
        if not random_init and Path(pretrained).is_file():
            raise _broken(Path(pretrained), err) from err
        if not isinstance(err, RuntimeError) or ("download" not in str(err).lower()
                                                  and "not a known tag" not in str(err)):
            raise
        raise _missing_error(name, pretrained, err) from err
