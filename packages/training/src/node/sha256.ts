import { createHash } from "node:crypto";
import type { Sha256 } from "../hash.ts";

/** SHA-256 by Node's native crypto: what the server hashes uploaded states and contributions with. */
export const nodeSha256: Sha256 = (parts) => {
  const hash = createHash("sha256");
  for (const part of parts) hash.update(part);
  return hash.digest("hex");
};
