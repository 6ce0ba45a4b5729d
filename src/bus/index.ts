/**
 * The `EventBus` namespace of `runstream`: the interface and the drivers that
 * need nothing beyond Runstream's own dependencies. The NATS driver is
 * `runstream/nats`, so that a program without it never loads its client.
 * @since 0.1.0
 */
export * from "./EventBus.ts"
export { FanoutConfig } from "./Fanout.ts"
/** In-process: one program (the default of `Runstream.layerRuntime`). */
export { layer as layerMemory } from "./MemoryBus.ts"
/** Postgres LISTEN/NOTIFY: across the processes of one database. */
export { layer as layerPostgres } from "./PostgresBus.ts"
