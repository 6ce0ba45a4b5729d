/**
 * `npm start`: API, workers and relay in one process with the demo tasks, on
 * an embedded Postgres (data in `RUNSTREAM_DATA_DIR`, default `.runstream`)
 * unless `DATABASE_URL` is set.
 * @since 0.1.0
 */
import * as Demo from "../demo/tasks.ts"
import * as Main from "./Main.ts"
import * as Programs from "./Programs.ts"

Main.run(Programs.makeDevLayer(Demo.all))
