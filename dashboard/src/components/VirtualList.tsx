/**
 * A list that renders only the rows in view (plus a margin), so that a log of
 * 100,000 events scrolls as one of 10. Each row's height is known from its
 * item (`heightOf`), so no row is measured: offsets are prefix sums.
 */
import type { ComponentChildren } from "preact"
import { useLayoutEffect, useMemo, useRef, useState } from "preact/hooks"

export interface VirtualListProps<A> {
  readonly items: ReadonlyArray<A>
  readonly heightOf: (item: A) => number
  readonly render: (item: A, index: number) => ComponentChildren
  readonly maxHeight: number
  readonly label: string
  /** Keeps the view at the end while the user has not scrolled away from it. */
  readonly follow?: boolean
}

const overscan = 400

export const VirtualList = <A,>(props: VirtualListProps<A>) => {
  const { items, heightOf } = props
  const scroller = useRef<HTMLDivElement>(null)
  const [scrollTop, setScrollTop] = useState(0)
  const atEnd = useRef(true)
  const offsets = useMemo(() => {
    const result = new Float64Array(items.length + 1)
    for (let i = 0; i < items.length; i++) result[i + 1] = result[i]! + heightOf(items[i]!)
    return result
  }, [items, heightOf])
  const total = offsets[items.length]!
  const height = Math.min(total, props.maxHeight)

  // The first row whose bottom is below `y`.
  const indexAt = (y: number) => {
    let low = 0
    let high = items.length
    while (low < high) {
      const mid = (low + high) >> 1
      if (offsets[mid + 1]! <= y) low = mid + 1
      else high = mid
    }
    return low
  }
  const first = indexAt(Math.max(0, scrollTop - overscan))
  const last = Math.min(items.length, indexAt(scrollTop + height + overscan) + 1)

  useLayoutEffect(() => {
    const element = scroller.current
    if (props.follow === true && element !== null && atEnd.current) {
      element.scrollTop = element.scrollHeight
    }
  }, [total, props.follow])

  const rows: Array<ComponentChildren> = []
  for (let i = first; i < last; i++) {
    rows.push(
      <div key={i} role="listitem" aria-setsize={items.length} aria-posinset={i + 1} class="vrow" style={{ top: `${offsets[i]}px`, height: `${offsets[i + 1]! - offsets[i]!}px` }}>
        {props.render(items[i]!, i)}
      </div>
    )
  }
  return (
    <div ref={scroller} class="vlist" style={{ height: `${height}px` }}
      onScroll={(event) => {
        const element = event.currentTarget
        atEnd.current = element.scrollTop + element.clientHeight >= element.scrollHeight - 4
        setScrollTop(element.scrollTop)
      }}>
      <div role="list" aria-label={props.label} style={{ height: `${total}px`, position: "relative" }}>
        {rows}
      </div>
    </div>
  )
}
