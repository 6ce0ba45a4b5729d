/**
 * The shop's workers: `node dist/src/worker.js`, as many processes as needed
 * on the server's `DATABASE_URL`. SIGTERM finishes or hands back their runs.
 */
import { Main, Programs } from "runstream"
import { tasks } from "./tasks.js"

Main.run(Programs.makeWorkerLayer(tasks))
