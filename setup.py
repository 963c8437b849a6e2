"""Build the optional C accelerator; the package works without it (pure-Python fallback)."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "stargate._speedups",
            sources=["src/stargate/_speedups.c"],
            optional=True,
            extra_compile_args=["-O3"],
        )
    ]
)
