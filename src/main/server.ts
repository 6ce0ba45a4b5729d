/**
 * `npm run server`: the HTTP API (with workers when `RUNSTREAM_SERVER_WORKERS=true`),
 * the demo tasks registered. Needs `DATABASE_URL` shared with the workers.
 * @since 0.1.0
 */
import { Demo, Main, Programs } from "../index.ts"

Main.run(Programs.makeServerLayer(Demo.all))
