import * as v from "valibot";
import {
  MODEL_ROUND_HEADER,
  PredictResponseSchema,
  SERVE_MS_HEADER,
  SERVED_BY_HEADER,
  SHAPE_HEADER,
  type PredictResponse,
} from "@crowdtrain/protocol";

/** Longest a call waits for an answer by default: above the server's default request deadline. */
export const DEFAULT_CLIENT_TIMEOUT_MS = 15_000;

/** The server refused or failed a request: its HTTP status, its words, and when to retry (503). */
export class PredictError extends Error {
  override name = "PredictError";
  constructor(
    message: string,
    readonly status: number,
    readonly retryAfterS: number | undefined,
  ) {
    super(message);
  }
}

export type BinaryPrediction = { outputs: Float32Array; classes: number; modelRound: number; servedBy: string; ms: number };

/**
 * A typed client of Crowdtrain's inference API (`POST /api/predict`), for Node 20+ or a browser.
 * JSON for a few rows; `predictBinary` sends float32 rows as they are, for large batches.
 */
export class PredictClient {
  private readonly url: string;
  private readonly timeoutMs: number;

  constructor(baseUrl: string, options: { timeoutMs?: number } = {}) {
    this.url = `${baseUrl.replace(/\/+$/, "")}/api/predict`;
    this.timeoutMs = options.timeoutMs ?? DEFAULT_CLIENT_TIMEOUT_MS;
  }

  async predict(inputs: readonly (readonly number[])[]): Promise<PredictResponse> {
    const response = await this.post("application/json", JSON.stringify({ inputs }), {});
    const parsed = v.safeParse(PredictResponseSchema, await response.json());
    if (!parsed.success) throw new PredictError(`the server's answer is not a prediction: ${v.summarize(parsed.issues)}`, response.status, undefined);
    return parsed.output;
  }

  async predictBinary(inputs: Float32Array, rows: number): Promise<BinaryPrediction> {
    if (!(Number.isInteger(rows) && rows >= 1 && inputs.length % rows === 0)) throw new RangeError(`${inputs.length} floats are not ${rows} equal rows`);
    const body = new Uint8Array(inputs.buffer, inputs.byteOffset, inputs.byteLength);
    const response = await this.post("application/octet-stream", body, { [SHAPE_HEADER]: `${rows},${inputs.length / rows}` });
    const bytes = new Uint8Array(await response.arrayBuffer());
    const shape = (response.headers.get(SHAPE_HEADER) ?? "").split(",").map(Number);
    const [answeredRows, classes] = shape;
    if (answeredRows !== rows || classes === undefined || !(classes >= 1) || bytes.byteLength !== rows * classes * 4) {
      throw new PredictError(`the server answered ${bytes.byteLength} bytes of shape ${shape.join("x")} for ${rows} rows`, response.status, undefined);
    }
    return {
      outputs: new Float32Array(bytes.slice().buffer),
      classes,
      modelRound: Number(response.headers.get(MODEL_ROUND_HEADER)),
      servedBy: response.headers.get(SERVED_BY_HEADER) ?? "",
      ms: Number(response.headers.get(SERVE_MS_HEADER)),
    };
  }

  private async post(type: string, body: string | Uint8Array, headers: Record<string, string>): Promise<Response> {
    const response = await fetch(this.url, {
      method: "POST",
      headers: { "content-type": type, ...headers },
      body,
      signal: AbortSignal.timeout(this.timeoutMs),
    });
    if (response.ok) return response;
    const text = await response.text();
    let message = text;
    try {
      message = (JSON.parse(text) as { error?: string }).error ?? text;
    } catch {
      // Not JSON (a proxy's page): its text is the message.
    }
    const retryAfter = response.headers.get("retry-after");
    throw new PredictError(`POST /api/predict: ${response.status} ${message}`, response.status, retryAfter === null ? undefined : Number(retryAfter));
  }
}
