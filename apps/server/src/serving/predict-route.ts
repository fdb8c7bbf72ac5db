import type express from "express";
import * as v from "valibot";
import {
  MAX_PREDICT_BODY_BYTES,
  MAX_PREDICT_ROWS,
  MODEL_ROUND_HEADER,
  PredictRequestSchema,
  SERVE_MS_HEADER,
  SERVED_BY_HEADER,
  SHAPE_HEADER,
  type PredictResponse,
} from "@crowdtrain/protocol";
import { createConcurrencyLimit, readBody } from "../http/body.ts";
import { HttpError, sendError } from "../http/errors.ts";
import type { Prediction, ServePool } from "./pool.ts";

const JSON_TYPE = "application/json";
const BINARY_TYPE = "application/octet-stream";
/** Bodies above this are "large": only a few are read at once, so memory stays bounded under a flood. */
const LARGE_BODY_BYTES = 1024 * 1024;
const MAX_LARGE_BODIES = 4;

/**
 * POST /api/predict: parses and checks the inputs (shape against the model, finite numbers, size),
 * hands them to the serving pool, and answers in the form they came in: JSON for JSON, float32 with
 * headers for float32. Every refusal is a 4xx or 5xx with a message that says what was wrong.
 */
export function predictRoute(pool: ServePool): express.RequestHandler {
  const large = createConcurrencyLimit(MAX_LARGE_BODIES);
  return (req, res, next) => {
    // What the headers alone tell first, then the pool's state; all before the body is read: under
    // overload a refusal must cost next to nothing.
    const declared = Number(req.headers["content-length"] ?? Number.NaN);
    const refused = headerProblem(req, declared, pool.features) ?? pool.refusal();
    if (refused !== undefined) return sendError(res, refused.status, refused.message, refused.headers);
    let release: (() => void) | undefined;
    if (!(declared <= LARGE_BODY_BYTES)) {
      release = large.tryAcquire();
      if (release === undefined) return sendError(res, 503, `too many large requests at once (${MAX_LARGE_BODIES}); retry in a second`, { "Retry-After": "1" });
    }
    readInputs(req, pool.features)
      .then(({ inputs, rows, binary }) => {
        release?.();
        release = undefined;
        return pool.predict(inputs, rows).then((prediction) => answer(res, prediction, rows, pool.classes, binary));
      })
      .catch((error: unknown) => {
        release?.();
        if (error instanceof HttpError) return sendError(res, error.status, error.message, error.headers);
        next(error);
      });
  };
}

/** A wrong content type (415) or a declared length over the limit (413), from the headers alone. */
function headerProblem(req: express.Request, declared: number, features: number): HttpError | undefined {
  const type = mediaType(req);
  if (type !== JSON_TYPE && type !== BINARY_TYPE) return new HttpError(415, unsupportedType(type, features));
  let limit = MAX_PREDICT_BODY_BYTES;
  if (type === BINARY_TYPE) {
    try {
      limit = binaryRows(req, features) * features * 4;
    } catch (error) {
      if (error instanceof HttpError) return error;
      throw error;
    }
  }
  if (declared > limit) return new HttpError(413, `request body of ${declared} bytes is larger than the limit of ${limit} bytes`);
  return undefined;
}

/** The rows a float32 body's X-Shape header declares, checked against the model's features (400 otherwise). */
function binaryRows(req: express.Request, features: number): number {
  const shape = String(req.headers[SHAPE_HEADER] ?? "");
  const match = /^(\d{1,6}),(\d{1,7})$/.exec(shape.replace(/\s/g, ""));
  if (match === null) throw new HttpError(400, `a float32 body needs an ${SHAPE_HEADER}: <rows>,${features} header, got "${shape.slice(0, 40)}"`);
  const rows = Number(match[1]);
  const columns = Number(match[2]);
  if (columns !== features) throw new HttpError(400, `${SHAPE_HEADER} says ${columns} numbers per row; the model takes ${features}`);
  if (rows < 1 || rows > MAX_PREDICT_ROWS) throw new HttpError(400, `${SHAPE_HEADER} says ${rows} rows; a request carries 1 to ${MAX_PREDICT_ROWS}`);
  return rows;
}

const mediaType = (req: express.Request): string => (req.headers["content-type"] ?? "").split(";")[0]?.trim().toLowerCase() ?? "";

const unsupportedType = (type: string, features: number): string =>
  `POST /api/predict takes ${JSON_TYPE} ({"inputs": number[][]}) or ${BINARY_TYPE} (float32 rows with an ${SHAPE_HEADER}: <rows>,${features} header), not ${type || "a body without a Content-Type"}`;

async function readInputs(req: express.Request, features: number): Promise<{ inputs: Float32Array; rows: number; binary: boolean }> {
  const type = mediaType(req);
  if (type === BINARY_TYPE) return readBinary(req, features);
  if (type !== JSON_TYPE) throw new HttpError(415, unsupportedType(type, features));
  const body = await readBody(req, { limit: MAX_PREDICT_BODY_BYTES, type: JSON_TYPE });
  let json: unknown;
  try {
    json = JSON.parse(body.toString("utf8"));
  } catch (error) {
    throw new HttpError(400, `the body is not JSON: ${error instanceof Error ? error.message : String(error)}`);
  }
  const parsed = v.safeParse(PredictRequestSchema, json);
  if (!parsed.success) throw new HttpError(400, `expected {"inputs": number[][]} of 1 to ${MAX_PREDICT_ROWS} rows of finite numbers: ${v.summarize(parsed.issues).slice(0, 300)}`);
  const rows = parsed.output.inputs;
  const inputs = new Float32Array(rows.length * features);
  rows.forEach((row, i) => {
    if (row.length !== features) throw new HttpError(400, `inputs[${i}] has ${row.length} numbers; the model takes ${features} per row`);
    inputs.set(row, i * features);
  });
  return { inputs, rows: rows.length, binary: false };
}

async function readBinary(req: express.Request, features: number): Promise<{ inputs: Float32Array; rows: number; binary: boolean }> {
  const rows = binaryRows(req, features);
  const body = await readBody(req, { limit: rows * features * 4, type: BINARY_TYPE });
  if (body.byteLength !== rows * features * 4) throw new HttpError(400, `the body has ${body.byteLength} bytes; ${rows} rows of ${features} float32 need ${rows * features * 4}`);
  const inputs = new Float32Array(body.buffer.slice(body.byteOffset, body.byteOffset + body.byteLength));
  const bad = inputs.findIndex((x) => !Number.isFinite(x));
  if (bad >= 0) throw new HttpError(400, `input value ${bad} (row ${Math.floor(bad / features)}) is not finite`);
  return { inputs, rows, binary: true };
}

function answer(res: express.Response, prediction: Prediction, rows: number, classes: number, binary: boolean): void {
  res.setHeader("Cache-Control", "no-store");
  if (binary) {
    res.setHeader(SHAPE_HEADER, `${rows},${classes}`);
    res.setHeader(MODEL_ROUND_HEADER, String(prediction.modelRound));
    res.setHeader(SERVED_BY_HEADER, prediction.servedBy);
    res.setHeader(SERVE_MS_HEADER, String(prediction.ms));
    res.type(BINARY_TYPE).send(Buffer.from(prediction.outputs.buffer, prediction.outputs.byteOffset, prediction.outputs.byteLength));
    return;
  }
  const outputs: number[][] = [];
  for (let r = 0; r < rows; r++) outputs.push(Array.from(prediction.outputs.subarray(r * classes, (r + 1) * classes)));
  const body: PredictResponse = { outputs, modelRound: prediction.modelRound, servedBy: prediction.servedBy, ms: prediction.ms };
  res.json(body);
}
