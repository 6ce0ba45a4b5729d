/**
 * The shop's API: `node dist/src/server.js`. Reads its settings from the
 * environment (`DATABASE_URL`, `PORT`, `RUNSTREAM_API_KEYS`, ...); with
 * `RUNSTREAM_SERVER_WORKERS=true` it runs the tasks too.
 */
import { Main, Programs } from "runstream"
import { tasks } from "./tasks.js"

Main.run(Programs.makeServerLayer(tasks))
