"""Exports that take camera pixels: a wrapper around the same built SlimMobileNet that
normalises (and, in the SavedModel, resizes and crops) inside the graph.

* SavedModel `serving_default`: `images` uint8 [N, H, W, 3] of any size (RGB) -> the
  `tf` preprocessing of amc_tf.core.preprocess (shorter side to int(size / 0.875), centre crop)
  -> (x / 255 - mean) / std -> `logits`;
* TFLite: uint8 [1, size, size, 3] (already resized and cropped by the app) -> normalise ->
  `logits`.

The preprocessing ops are amc_tf.core.preprocess's, so `amc-tf eval --preprocess tf` on the
plain model and this SavedModel compute the same thing.
"""

from __future__ import annotations

import os
from pathlib import Path

import tensorflow as tf

from amc_tf.core.preprocess import Preprocessing, tf_crop, tf_normalize
from amc_tf.converters.exporters import tflite_from_concrete
from amc_tf.converters.tf_builder import SlimMobileNet


def model_preprocessing(model: SlimMobileNet) -> Preprocessing:
    spec = model.spec
    return Preprocessing.for_input_size(spec.input_size, mean=tuple(spec.mean), std=tuple(spec.std))


class WithPreprocessing(tf.Module):
    def __init__(self, model: SlimMobileNet):
        super().__init__(name="with_preprocessing")
        self.model = model  # tracked: the SavedModel holds the same slim variables
        self.prep = model_preprocessing(model)

    def images_function(self):
        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")], autograph=False)
        def serve(images):
            pixels = tf_crop(images, self.prep)
            return {"logits": self.model.forward(tf_normalize(pixels, self.prep))}

        return serve

    def pixels_function(self, frozen: bool = True):
        s = self.prep.size

        @tf.function(input_signature=[tf.TensorSpec([1, s, s, 3], tf.uint8, name="pixels")], autograph=False)
        def serve(pixels):
            return {"logits": self.model.forward(tf_normalize(pixels, self.prep), frozen=frozen)}

        return serve


def write_saved_model_uint8(model: SlimMobileNet, directory: str | os.PathLike) -> None:
    wrapper = WithPreprocessing(model)
    serve = wrapper.images_function()
    tf.saved_model.save(wrapper, os.fspath(directory), signatures={"serving_default": serve.get_concrete_function()})


def write_tflite_uint8(model: SlimMobileNet, path: str | os.PathLike) -> int:
    data = tflite_from_concrete(WithPreprocessing(model).pixels_function().get_concrete_function())
    Path(path).write_bytes(data)
    return len(data)


def write_all(model: SlimMobileNet, directory: str | os.PathLike) -> dict:
    """DIR/saved_model/ and DIR/model.tflite; returns the report.json artifact entry."""
    directory = Path(directory)
    directory.mkdir()
    write_saved_model_uint8(model, directory / "saved_model")
    size = write_tflite_uint8(model, directory / "model.tflite")
    prep = model_preprocessing(model)
    name = directory.name
    return {
        "saved_model": {"path": f"{name}/saved_model", "signature": "serving_default", "input": "images",
                        "dtype": "uint8", "shape": [None, None, None, 3], "output": "logits"},
        "tflite": {"path": f"{name}/model.tflite", "bytes": size, "dtype": "uint8", "input": [1, prep.size, prep.size, 3]},
        "preprocessing": prep.to_dict(),
    }
