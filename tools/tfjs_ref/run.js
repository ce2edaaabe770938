#!/usr/bin/env node
// Run an original TF.js graph model on one saved input tensor with the pure-JS
// CPU backend of @tensorflow/tfjs, and save every output as raw float32.
//
// The reference our PyTorch conversions are checked against: both sides read
// the same input bytes, so image decoders and resizers cannot differ.
//
//   node run.js MODEL.json INPUT.raw SHAPE DTYPE OUT_DIR [NODE,NODE,...]
//
//   SHAPE   comma separated, e.g. 1,3,416,416
//   DTYPE   int32 | float32 (INPUT.raw is little-endian, C order)
//   NODE    optional graph node names to fetch instead of the signature
//           outputs (intermediate nodes are handy when hunting a mismatch)
//
// Writes OUT_DIR/outputs.json = {"outputs": [{"name", "shape", "file"}], "ms"}
// and one OUT_DIR/<i>.f32 per output (little-endian float32, C order).
'use strict';

const fs = require('fs');
const path = require('path');

function die(msg) {
  process.stderr.write(`run.js: ${msg}\n`);
  process.exit(2);
}

// An ArrayBuffer holding exactly these bytes: a Node Buffer may be a view
// into a larger shared pool, and tfjs reads the whole underlying buffer.
function exactArrayBuffer(buf) {
  return buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength);
}

async function main() {
  const argv = process.argv.slice(2);
  if (argv.length < 5) die('usage: run.js MODEL.json INPUT.raw SHAPE DTYPE OUT_DIR [NODE,...]');
  const [modelPath, inputPath, shapeArg, dtype, outDir, nodesArg] = argv;
  const shape = shapeArg.split(',').map((s) => parseInt(s, 10));
  if (shape.some((d) => !Number.isInteger(d) || d < 0)) die(`bad shape ${shapeArg}`);
  if (dtype !== 'int32' && dtype !== 'float32') die(`dtype must be int32 or float32, not ${dtype}`);

  // Silence tfjs's advice to install tfjs-node: we want the pure-JS kernels
  // (nothing here writes to stdout otherwise).
  console.log = () => {};
  console.warn = () => {};
  const tf = require('@tensorflow/tfjs');
  await tf.setBackend('cpu');
  await tf.ready();

  const model = JSON.parse(fs.readFileSync(modelPath, 'utf8'));
  const dir = path.dirname(modelPath);
  const weightSpecs = [];
  const shards = [];
  for (const group of model.weightsManifest) {
    weightSpecs.push(...group.weights);
    for (const p of group.paths) shards.push(fs.readFileSync(path.join(dir, p)));
  }
  const weightData = exactArrayBuffer(Buffer.concat(shards));
  const graph = await tf.loadGraphModel(tf.io.fromMemory({
    modelTopology: model.modelTopology, weightSpecs, weightData, signature: model.signature,
  }));

  const raw = fs.readFileSync(inputPath);
  const count = shape.reduce((a, b) => a * b, 1);
  if (raw.length !== count * 4) die(`${inputPath}: ${raw.length} bytes, expected ${count * 4} for shape ${shapeArg}`);
  const ab = exactArrayBuffer(raw);
  const values = dtype === 'int32' ? new Int32Array(ab) : new Float32Array(ab);
  const input = tf.tensor(values, shape, dtype);

  const names = nodesArg ? nodesArg.split(',') : graph.outputNodes;
  const inputName = graph.inputNodes[0];
  const t0 = Date.now();
  let outs;
  try {
    outs = graph.execute({ [inputName]: input }, names);
  } catch (e) {
    // Graphs with control flow or dynamic shapes need the async executor.
    outs = await graph.executeAsync({ [inputName]: input }, names);
  }
  if (!Array.isArray(outs)) outs = [outs];
  const meta = { outputs: [], ms: 0 };
  fs.mkdirSync(outDir, { recursive: true });
  for (let i = 0; i < outs.length; i += 1) {
    const data = await outs[i].cast('float32').data();
    const file = `${i}.f32`;
    fs.writeFileSync(path.join(outDir, file), Buffer.from(data.buffer, data.byteOffset, data.byteLength));
    meta.outputs.push({ name: names[i].split(':')[0], shape: outs[i].shape, file });
  }
  meta.ms = Date.now() - t0;
  fs.writeFileSync(path.join(outDir, 'outputs.json'), JSON.stringify(meta));
}

main().catch((e) => die(e && e.stack ? e.stack : String(e)));
