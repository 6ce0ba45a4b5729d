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
  readonly bars?: boolean
}

export const Chart = (props: ChartProps) => {
  const container = useRef<HTMLDivElement>(null)
  const plot = useRef<uPlot | null>(null)
  const shape = `${props.series.map((s) => s.label).join("|")}|${props.bars === true}`

  useEffect(() => {
    const element = container.current!
    const paths = props.bars === true ? uPlot.paths.bars!({ size: [0.7, 40] }) : undefined
    const options: uPlot.Options = {
      width: Math.max(element.clientWidth, 200),
      height: 200,
      series: [
        {},
        ...props.series.map((s) => ({
          label: s.label,
          stroke: s.color,
          width: 2,
          ...(s.fill === true || props.bars === true ? { fill: `${s.color}55` } : {}),
          ...(paths === undefined ? {} : { paths }),
          points: { show: false }
        }))
      ],
      axes: [{}, { label: props.yLabel, size: 60 }],
      scales: { y: { range: (_u, min, max) => [Math.min(0, min), Math.max(1, max)] } },
      legend: { live: true }
    }
    const chart = new uPlot(options, props.data as uPlot.AlignedData, element)
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
    plot.current?.setData(props.data as uPlot.AlignedData)
  }, [props.data])

  return (
    <figure class="chart">
      <figcaption>{props.title}</figcaption>
      <div ref={container} role="img" aria-label={props.title} />
    </figure>
  )
}
