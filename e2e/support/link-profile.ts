// Link profiles for specs and benchmarks: cap every link of the e2e namespace between tests.
//   setLinkProfile("thin"); try { ... } finally { setLinkProfile("lan"); }
// The commands and the namespace check live in link-profiles.mjs, shared with run-e2e.mjs
// (CROWDTRAIN_LINK=thin caps a whole run).
import { applyLinkProfile, checkLinkProfile, insideE2eNamespace, LINK_PROFILE_NAMES, LINK_PROFILES, type LinkProfile } from "./link-profiles.mjs";

export { checkLinkProfile, insideE2eNamespace, LINK_PROFILE_NAMES, LINK_PROFILES, type LinkProfile };

/**
 * Shapes lo to `profile` (lan: no cap; thin: 20 Mbit/s; bad: 5 Mbit/s); takes effect at once, for
 * connections already open too. Throws for an unknown name, outside the e2e namespace, or when
 * `ip`/`tc` fail (with their stderr).
 */
export function setLinkProfile(profile: string): void {
  applyLinkProfile(profile);
}
