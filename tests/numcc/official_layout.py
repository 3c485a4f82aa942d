"""The state-dict layouts of the authors' released files, written down from their module
definitions (sail-sg/numcc src/model/*.py and src/layers.py; facebookresearch/MCC
mcc_model.py), independently of numcc.models, so the tests can fabricate files shaped like
udf-ep99.pth and co3dv2_all_categories.pth.

NU-MCC: 469 keys, 209,104,132 elements at 200 anchors. MCC: 419 keys, 202,141,441 elements.
"""

from __future__ import annotations

WIDTH, DEC, HIDDEN = 768, 512, 512  # ViT-B towers, decoders, decoderl2's MLP
TOKENS = 197  # 1 + 14 x 14 patches


def vit_block(prefix: str, dim: int, mlp: int) -> list[tuple[str, tuple[int, ...]]]:
    """timm's Block with qkv bias: norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2."""
    return [
        (f"{prefix}.norm1.weight", (dim,)),
        (f"{prefix}.norm1.bias", (dim,)),
        (f"{prefix}.attn.qkv.weight", (3 * dim, dim)),
        (f"{prefix}.attn.qkv.bias", (3 * dim,)),
        (f"{prefix}.attn.proj.weight", (dim, dim)),
        (f"{prefix}.attn.proj.bias", (dim,)),
        (f"{prefix}.norm2.weight", (dim,)),
        (f"{prefix}.norm2.bias", (dim,)),
        (f"{prefix}.mlp.fc1.weight", (mlp, dim)),
        (f"{prefix}.mlp.fc1.bias", (mlp,)),
        (f"{prefix}.mlp.fc2.weight", (dim, mlp)),
        (f"{prefix}.mlp.fc2.bias", (dim,)),
    ]


def linear(prefix: str, n_out: int, n_in: int, bias: bool = True):
    keys = [(f"{prefix}.weight", (n_out, n_in))]
    return keys + [(f"{prefix}.bias", (n_out,))] if bias else keys


def encoder_layout(prefix: str = "") -> list[tuple[str, tuple[int, ...]]]:
    """MCCEncoder (NU-MCC, under ``encoder.``) or MCC's top level (prefix '')."""
    keys = [
        (f"{prefix}cls_token", (1, 1, WIDTH)),
        (f"{prefix}cls_token_xyz", (1, 1, WIDTH)),
        (f"{prefix}pos_embed", (1, TOKENS, WIDTH)),
        (f"{prefix}patch_embed.proj.weight", (WIDTH, 3, 16, 16)),
        (f"{prefix}patch_embed.proj.bias", (WIDTH,)),
        (f"{prefix}xyz_pos_embed.two_d_pos_embed", (1, 65, WIDTH)),
        (f"{prefix}xyz_pos_embed.cls_token", (1, 1, WIDTH)),
        *linear(f"{prefix}xyz_pos_embed.pos_embed", WIDTH, 3),
        *vit_block(f"{prefix}xyz_pos_embed.blocks.0", WIDTH, 2 * WIDTH),
        (f"{prefix}xyz_pos_embed.invalid_xyz_token", (WIDTH,)),
    ]
    for tower in ("blocks", "blocks_xyz"):
        for i in range(12):
            keys += vit_block(f"{prefix}{tower}.{i}", WIDTH, 4 * WIDTH)
    for norm in ("norm", "norm_xyz"):
        keys += [(f"{prefix}{norm}.weight", (WIDTH,)), (f"{prefix}{norm}.bias", (WIDTH,))]
    return keys


def numcc_layout(n_groups: int = 200) -> list[tuple[str, tuple[int, ...]]]:
    """NUMCC at the original's defaults (no_fine 0) with ``n_groups`` anchors."""
    keys = encoder_layout("encoder.")
    keys += [
        *linear("decoderl1.decoder_embed", DEC, 2 * WIDTH),
        ("decoderl1.init_embedding.weight", (n_groups, DEC)),
        ("decoderl1.decoder_pos_embed", (1, TOKENS, DEC)),
    ]
    for i in range(8):
        keys += vit_block(f"decoderl1.decoder_blocks.{i}", DEC, 4 * DEC)
    keys += [("decoderl1.decoder_norm.weight", (DEC,)), ("decoderl1.decoder_norm.bias", (DEC,))]
    keys += linear("decoderl1.decoder_pred", DEC + 3, DEC)
    ct1 = "decoderl2.ct1"
    keys += linear(f"{ct1}.fc_delta.0", HIDDEN, 3) + linear(f"{ct1}.fc_delta.2", HIDDEN, HIDDEN)
    keys += linear(f"{ct1}.fc_gamma.0", HIDDEN, HIDDEN) + linear(
        f"{ct1}.fc_gamma.2", HIDDEN, HIDDEN
    )
    for name in ("w_k_global", "w_v_global", "w_qs", "w_ks", "w_vs", "w_kc", "w_vc"):
        keys += linear(f"{ct1}.{name}", HIDDEN, DEC, bias=False)
    keys += linear("decoderl2.fc_s", DEC, 3)
    for i in range(5):
        keys += linear(f"decoderl2.blocks.{i}.fc_0", HIDDEN, HIDDEN)
        keys += linear(f"decoderl2.blocks.{i}.fc_1", HIDDEN, HIDDEN)
    for i in range(5):
        keys += linear(f"decoderl2.fc_c.{i}", HIDDEN, HIDDEN)
    keys += linear("decoderl2.fc_p", HIDDEN, 60)
    keys += linear("fc_out.1", 1 + 256 * 3, HIDDEN)
    return keys


def mcc_layout() -> list[tuple[str, tuple[int, ...]]]:
    """facebookresearch/MCC's get_mcc_model (256-way colour head)."""
    keys = encoder_layout("")
    keys += [
        *linear("decoder_embed", DEC, 2 * WIDTH),
        *linear("decoder_xyz_pos_embed.pos_embed", DEC, 3),
        ("decoder_pos_embed", (1, TOKENS, DEC)),
    ]
    for i in range(8):
        keys += vit_block(f"decoder_blocks.{i}", DEC, 4 * DEC)
    keys += [("decoder_norm.weight", (DEC,)), ("decoder_norm.bias", (DEC,))]
    keys += linear("decoder_pred", 1 + 256 * 3, DEC)
    return keys
