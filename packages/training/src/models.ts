import * as tf from "@tensorflow/tfjs";
import type { ModelSpec } from "@crowdtrain/protocol";
import { modelLayers, type LayerInfo } from "./layers.ts";

/**
 * Builds the job's model. Initial weights depend only on `seed`: TF.js seeded initializers draw
 * their numbers in JS (seedrandom), not on the backend, so every peer and the server build the
 * same bits. Layer names are fixed so an exported model.json does not depend on how many models
 * the process built before.
 */
export function buildModel(spec: ModelSpec, inputShape: readonly number[], classes: number, seed: number): tf.Sequential {
  return buildLayers(modelLayers(spec, inputShape, classes), seed, spec.kind);
}

/**
 * Builds the layers [from, to) of the job's model alone: a pipeline stage. Its layers carry the whole
 * model's names and initial weights (each kernel is seeded by its index in the whole model), so the
 * stages of a model, chained, compute exactly what buildModel's model computes.
 */
export function buildStage(layers: readonly LayerInfo[], from: number, to: number, seed: number): tf.Sequential {
  if (!Number.isInteger(from) || !Number.isInteger(to) || from < 0 || to > layers.length || from >= to) {
    throw new RangeError(`a stage needs layers [from, to) within [0, ${layers.length}], got [${from}, ${to})`);
  }
  return buildLayers(layers.slice(from, to), seed, `stage_${from}_${to}`);
}

function buildLayers(layers: readonly LayerInfo[], seed: number, name: string): tf.Sequential {
  const model = tf.sequential({ name });
  layers.forEach((layer, i) => {
    // The first layer declares the input shape; later layers must not.
    const input = i === 0 ? { inputShape: [...layer.inputShape] } : {};
    const kernelInitializer = layer.kernelIndex === undefined ? undefined : tf.initializers.glorotUniform({ seed: layerSeed(seed, layer.kernelIndex) });
    switch (layer.kind) {
      case "flatten":
        model.add(tf.layers.flatten({ ...input, name: layer.name }));
        break;
      case "dense":
        model.add(tf.layers.dense({ ...input, units: layer.units, activation: layer.activation, kernelInitializer, name: layer.name }));
        break;
      case "conv2d":
        // "same" keeps 28x28 inputs valid for all 4 allowed blocks (28, 14, 7, 3, 1).
        model.add(tf.layers.conv2d({ ...input, filters: layer.filters, kernelSize: layer.kernelSize, padding: "same", activation: "relu", kernelInitializer, name: layer.name }));
        break;
      case "maxPool":
        model.add(tf.layers.maxPooling2d({ ...input, poolSize: 2, strides: 2, name: layer.name }));
        break;
    }
  });
  return model;
}

function layerSeed(seed: number, layer: number): number {
  // Golden-ratio step then a multiply-xorshift: distinct, well-spread 32-bit seeds.
  let x = (seed + Math.imul(layer + 1, 0x9e3779b9)) >>> 0;
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b) >>> 0;
  return (x ^ (x >>> 13)) >>> 0;
}
