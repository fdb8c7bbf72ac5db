/** Bumped on any incompatible change to a message or frame; peers with another version are refused. */
export const PROTOCOL_VERSION = 8;
