// Types of link-profiles.mjs (plain JS so that run-e2e.mjs can import it without a TypeScript loader).
export type LinkProfile = "lan" | "thin" | "bad";
export declare const LINK_PROFILES: Readonly<Record<LinkProfile, number | null>>;
export declare const LINK_PROFILE_NAMES: readonly LinkProfile[];
export declare function checkLinkProfile(name: string): LinkProfile;
export declare function insideE2eNamespace(env?: NodeJS.ProcessEnv): boolean;
export declare function applyLinkProfile(profile: string, env?: NodeJS.ProcessEnv): void;
