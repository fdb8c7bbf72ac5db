// HTTPS for the server: browsers give WebGPU only to secure pages, so a volunteer on another machine
// needs https:// (localhost is the one exception). An operator brings a certificate, or asks for a
// self-signed one for a LAN trial (the browser then asks the volunteer to accept it once).
import { X509Certificate, createPrivateKey } from "node:crypto";
import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { isIP } from "node:net";
import { join } from "node:path";
import { createSecureContext } from "node:tls";
import { generate } from "selfsigned";

export type TlsCredentials = { cert: string; key: string };

/** How long a self-signed certificate lasts; one this close to its end is replaced. */
const SELF_SIGNED_DAYS = 365;
const RENEW_BEFORE_MS = 7 * 24 * 3_600_000;

export class TlsConfigError extends Error {
  override name = "TlsConfigError";
}

/** The operator's certificate and key (PEM files), checked to belong together before we listen. */
export async function loadTlsFiles(certFile: string, keyFile: string): Promise<TlsCredentials> {
  const read = async (file: string, what: string): Promise<string> => {
    try {
      return await readFile(file, "utf8");
    } catch (error) {
      throw new TlsConfigError(`cannot read the TLS ${what} ${file}: ${(error as Error).message}`);
    }
  };
  const credentials = { cert: await read(certFile, "certificate"), key: await read(keyFile, "key") };
  checkPair(credentials, `${certFile} and ${keyFile}`);
  return credentials;
}

/**
 * A self-signed certificate for `names` (host names and IP addresses), kept in `dir` so volunteers
 * who accepted it once are not asked again after a restart. Reused while it covers every name and
 * has more than a week left; otherwise a new one is made and written atomically.
 */
export async function selfSignedTls(dir: string, names: readonly string[], now = new Date()): Promise<TlsCredentials & { created: boolean }> {
  const certFile = join(dir, "self-signed.crt");
  const keyFile = join(dir, "self-signed.key");
  const existing = await readPair(certFile, keyFile);
  if (existing !== undefined && covers(existing.cert, names, now)) return { ...existing, created: false };
  const notAfter = new Date(now.getTime() + SELF_SIGNED_DAYS * 86_400_000);
  const pems = await generate([{ name: "commonName", value: names[0] ?? "localhost" }], {
    keyType: "ec",
    curve: "P-256",
    algorithm: "sha256",
    notBeforeDate: now,
    notAfterDate: notAfter,
    extensions: [
      { name: "basicConstraints", cA: false },
      { name: "keyUsage", digitalSignature: true, keyEncipherment: true, critical: true },
      { name: "extKeyUsage", serverAuth: true },
      { name: "subjectAltName", altNames: names.map((name) => (isIP(name) === 0 ? { type: 2, value: name } : { type: 7, ip: name })) },
    ],
  });
  const credentials = { cert: pems.cert, key: pems.private };
  await mkdir(dir, { recursive: true });
  await writeAtomically(keyFile, credentials.key, 0o600);
  await writeAtomically(certFile, credentials.cert, 0o644);
  return { ...credentials, created: true };
}

/** The SHA-256 fingerprint browsers show, for the operator to compare. */
export function fingerprint(cert: string): string {
  return new X509Certificate(cert).fingerprint256;
}

function checkPair(credentials: TlsCredentials, what: string): void {
  try {
    createPrivateKey(credentials.key);
    new X509Certificate(credentials.cert);
    createSecureContext(credentials); // throws when the key does not match the certificate
  } catch (error) {
    throw new TlsConfigError(`${what} are not a PEM certificate and its private key: ${(error as Error).message}`);
  }
}

async function readPair(certFile: string, keyFile: string): Promise<TlsCredentials | undefined> {
  let credentials: TlsCredentials;
  try {
    credentials = { cert: await readFile(certFile, "utf8"), key: await readFile(keyFile, "utf8") };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw error;
  }
  try {
    checkPair(credentials, `${certFile} and ${keyFile}`);
  } catch {
    // A damaged pair from an earlier run is ours to replace, not the operator's problem.
    return undefined;
  }
  return credentials;
}

function covers(cert: string, names: readonly string[], now: Date): boolean {
  const x509 = new X509Certificate(cert);
  if (new Date(x509.validTo).getTime() - now.getTime() < RENEW_BEFORE_MS) return false;
  return names.every((name) => (isIP(name) === 0 ? x509.checkHost(name) !== undefined : x509.checkIP(name) !== undefined));
}

async function writeAtomically(file: string, text: string, mode: number): Promise<void> {
  const temporary = `${file}.${process.pid}.tmp`;
  await writeFile(temporary, text, { mode });
  await rename(temporary, file);
}
