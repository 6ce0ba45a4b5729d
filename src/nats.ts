/**
 * `runstream/nats`: the event bus on NATS, for programs on several hosts.
 * Its own entry point, so that programs on another bus never load the NATS
 * client; it needs `@nats-io/transport-node` installed.
 *
 * ```ts
 * import { NatsBus } from "runstream/nats"
 * Runstream.layerWithWorkers({ bus: NatsBus.layer })
 * ```
 * @since 0.1.0
 */
export * as NatsBus from "./bus/NatsBus.ts"
