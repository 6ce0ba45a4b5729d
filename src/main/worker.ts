/**
 * `npm run worker`: workers and the outbox relay, no API, the demo tasks
 * registered; `/healthz` and `/readyz` on `RUNSTREAM_HEALTH_PORT` when set.
 * @since 0.1.0
 */
import { Demo, Main, Programs } from "../index.ts"

Main.run(Programs.makeWorkerLayer(Demo.all))
