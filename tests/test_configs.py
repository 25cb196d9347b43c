"""Config variants and light imports: the structure other modules rely on."""

import subprocess
import sys
import textwrap

import ml_collections
import pytest

from configs import ebst

VARIANTS = ("quickstart", "smoke")


def _fields(config: ml_collections.ConfigDict, prefix: str = "") -> dict[str, type]:
    """Every leaf field's dotted path -> the type of its value (placeholders: their declared type)."""
    fields = {}
    for key in config:
        value = config[key]
        if isinstance(value, ml_collections.ConfigDict):
            fields.update(_fields(value, f"{prefix}{key}."))
        else:
            fields[f"{prefix}{key}"] = config.get_type(key)
    return fields


@pytest.mark.parametrize("variant", VARIANTS)
def test_variants_have_exactly_the_defaults_fields(variant):
    default, changed = _fields(ebst.get_config()), _fields(ebst.get_config(variant))
    assert sorted(changed) == sorted(default)
    assert {k: v for k, v in changed.items() if v != default[k]} == {}  # and their types


def test_variants_change_fields_not_blocks():
    """A field added to a default block reaches every variant (variants update, never replace)."""
    default = ebst.get_config()
    for variant in VARIANTS:
        config = ebst.get_config(variant)
        assert config.model.generator.encoder_init == default.model.generator.encoder_init
        assert config.model.discriminator.name == default.model.discriminator.name


def test_unknown_variant_is_named():
    with pytest.raises(ValueError, match="unknown variant 'tiny'"):
        ebst.get_config("tiny")


def test_pure_modules_import_neither_tensorflow_nor_tfds():
    code = textwrap.dedent("""
        import sys
        import tfds_celebamask.labels, tfds_celebamask.layout, tfds_celebamask.synthetic_render
        import maskgan_jax.models, maskgan_jax.objective, maskgan_jax.edit
        import maskgan_jax.benchmarks.dmn_convergence
        heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tensorflow_datasets'))
        print(heavy)
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr


def test_register_makes_the_builder_known_to_tfds():
    code = textwrap.dedent("""
        import tensorflow_datasets as tfds
        import tfds_celebamask
        print('celebamask_hq' in tfds.list_builders(with_community_datasets=False))
        tfds_celebamask.register()
        print('celebamask_hq' in tfds.list_builders(with_community_datasets=False))
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "True"], result.stdout + result.stderr
