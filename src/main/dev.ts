/**
 * `npm start`: API, workers and relay in one process with the demo tasks and
 * the demo schedule (`demo.heartbeat`, every minute), on
 * an embedded Postgres (data in `RUNSTREAM_DATA_DIR`, default `.runstream`)
 * unless `DATABASE_URL` is set; the dashboard at `/`, built first when a
 * fresh checkout has none (or its sources changed).
 * @since 0.1.0
 */
import { Layer } from "effect"
import { Demo, Main, Programs } from "../index.ts"
import * as DashboardBuild from "./DashboardBuild.ts"

Main.run(Programs.makeDevLayer(Demo.all, { schedules: Demo.schedules }).pipe(Layer.provide(DashboardBuild.layer)))
