/** A uPlot chart that follows its data and its container's width. */
import { useEffect, useRef } from "preact/hooks"
import uPlot from "uplot"
import "uplot/dist/uPlot.min.css"

export interface ChartProps {
  readonly title: string
  readonly series: ReadonlyArray<{ readonly label: string; readonly color: string; readonly fill?: boolean }>
  /** x (unix seconds) first, then one array per series. */
  readonly data: uPlot.AlignedData
  readonly yLabel: string
  /** Bars stacked in series order (the data as given; the chart adds them up). */
  readonly stacked?: boolean
  readonly points?: boolean
}

/**
 * Stacked bars as uPlot draws them: series i becomes the sum of series i..n,
 * so the first (tallest) is drawn first and each next one in front of it.
 */
const stack = (data: uPlot.AlignedData): uPlot.AlignedData => {
  const [x, ...series] = data
  const sums: Array<Array<number>> = series.map(() => [])
  for (let i = series.length - 1; i >= 0; i--) {
    sums[i] = Array.from(series[i]!, (v, j) => (v ?? 0) + (i === series.length - 1 ? 0 : sums[i + 1]![j]!))
  }
  return [x, ...sums] as uPlot.AlignedData
}

export const Chart = (props: ChartProps) => {
  const container = useRef<HTMLDivElement>(null)
  const plot = useRef<uPlot | null>(null)
  const shape = `${props.series.map((s) => s.label).join("|")}|${props.stacked === true}`
  const shown = (data: uPlot.AlignedData) => props.stacked === true ? stack(data) : data
  const raw = useRef(props.data)
  raw.current = props.data

  useEffect(() => {
    const element = container.current!
    const paths = props.stacked === true ? uPlot.paths.bars!({ size: [0.7, 40] }) : undefined
    const options: uPlot.Options = {
      width: Math.max(element.clientWidth, 200),
      height: 200,
      series: [
        {},
        ...props.series.map((s) => ({
          label: s.label,
          stroke: s.color,
          width: 2,
          ...(s.fill === true ? { fill: `${s.color}55` } : {}),
          ...(props.stacked === true ? { fill: s.color } : {}),
          ...(paths === undefined ? {} : { paths }),
          // The legend shows each series' own value, not the stacked sum.
          value: (_u: uPlot, _v: number | null, seriesIndex: number, index: number | null) =>
            index === null ? "--" : String(raw.current[seriesIndex]?.[index] ?? "--"),
          points: { show: props.points === true, size: 6 }
        }))
      ],
      axes: [{}, { label: props.yLabel, size: 60 }],
      scales: {
        // One sample has no width (uPlot would make it 1000 days): a minute either side of it.
        x: {
          time: true,
          range: (u, min, max) => u.data[0].length === 1 ? [u.data[0][0]! - 60, u.data[0][0]! + 60] : [min, max]
        },
        y: { range: (_u, min, max) => [Math.min(0, min), Math.max(1, max)] }
      },
      legend: { live: true }
    }
    const chart = new uPlot(options, shown(props.data), element)
    plot.current = chart
    const observer = new ResizeObserver(() => chart.setSize({ width: Math.max(element.clientWidth, 200), height: 200 }))
    observer.observe(element)
    return () => {
      observer.disconnect()
      chart.destroy()
      plot.current = null
    }
  }, [shape])

  useEffect(() => {
    plot.current?.setData(shown(props.data))
  }, [props.data])

  return (
    <figure class="chart">
      <figcaption>{props.title}</figcaption>
      <div ref={container} role="img" aria-label={props.title} />
    </figure>
  )
}
