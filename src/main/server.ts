/**
 * `npm run server`: the HTTP API (with workers when `RUNSTREAM_SERVER_WORKERS=true`),
 * the demo tasks registered. Needs `DATABASE_URL` shared with the workers.
 * @since 0.1.0
 */
import * as Demo from "../demo/tasks.ts"
import * as Main from "./Main.ts"
import * as Programs from "./Programs.ts"

Main.run(Programs.makeServerLayer(Demo.all))
