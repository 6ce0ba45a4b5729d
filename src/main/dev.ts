/**
 * `npm start`: API, workers and relay in one process with the demo tasks, on
 * an embedded Postgres (data in `RUNSTREAM_DATA_DIR`, default `.runstream`)
 * unless `DATABASE_URL` is set.
 * @since 0.1.0
 */
import { Demo, Main, Programs } from "../index.ts"

Main.run(Programs.makeDevLayer(Demo.all))
