export { VirtualClock } from "./virtual-clock.ts";
export { SimNetwork, type Link, type NetworkOptions } from "./network.ts";
export { DEFAULT_POPULATION, Draws, homogeneous, type LogNormal, type Population, type Volunteer } from "./models.ts";
export { standInParams, Swarm, type RoundFigures, type SwarmConfig, type SwarmResult } from "./swarm.ts";
export { simulateAllReduce, type AllReduceCase } from "./allreduce-only.ts";
export { simulateTraining, type TrainingCase, type TrainingPrediction } from "./training-check.ts";
export { median } from "./median.ts";
