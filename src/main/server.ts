/**
 * `npm run server`: the HTTP API (with workers when `RUNSTREAM_SERVER_WORKERS=true`),
 * the demo tasks registered, on `DATABASE_URL` shared with the workers (without
 * it, an embedded Postgres of its own: for trying it alone).
 * @since 0.1.0
 */
import { Demo, Main, Programs } from "../index.ts"

Main.run(Programs.makeServerLayer(Demo.all))
