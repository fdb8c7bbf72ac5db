import { loadSplit, parseManifest, type Dataset, type DatasetManifest } from "@crowdtrain/training";

/** One dataset file (manifest or shard): the server has them all at hand, so this is generous. */
const DATASET_FETCH_TIMEOUT_MS = 60_000;

/** Fetches and checks a dataset's manifest and training shards from `datasetUrl` (e.g. /data/mnist). */
export async function fetchTrainSplit(datasetUrl: string): Promise<{ manifest: DatasetManifest; train: Dataset }> {
  const get = async (file: string): Promise<Uint8Array> => {
    const response = await fetch(`${datasetUrl}/${file}`, { signal: AbortSignal.timeout(DATASET_FETCH_TIMEOUT_MS) });
    if (!response.ok) throw new Error(`GET ${datasetUrl}/${file}: ${response.status}`);
    return new Uint8Array(await response.arrayBuffer());
  };
  const manifest = parseManifest(JSON.parse(new TextDecoder().decode(await get("manifest.json"))));
  return { manifest, train: await loadSplit(manifest, "train", get) };
}
