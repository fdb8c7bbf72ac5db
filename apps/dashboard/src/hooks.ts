import { useEffect, useRef, useState, type RefObject } from "react";
import { INITIAL_FEED, StatusFeed, type FeedState } from "./feed.ts";

/** The live status; the feed (its EventSource and timers) lives as long as the component using it. */
export function useStatusFeed(url = "/api/events"): FeedState {
  const [state, setState] = useState<FeedState>(INITIAL_FEED);
  useEffect(() => {
    const feed = new StatusFeed(url, setState);
    return () => feed.close();
  }, [url]);
  return state;
}

/** The rendered width of an element, followed with a ResizeObserver; `fallback` before the first layout. */
export function useWidth<T extends Element>(fallback: number): [RefObject<T | null>, number] {
  const ref = useRef<T | null>(null);
  const [width, setWidth] = useState(fallback);
  useEffect(() => {
    const element = ref.current;
    if (element === null) return undefined;
    const observer = new ResizeObserver((entries) => {
      const measured = entries[0]?.contentRect.width;
      if (measured !== undefined && measured > 0) setWidth(Math.round(measured));
    });
    observer.observe(element);
    return () => observer.disconnect();
  }, []);
  return [ref, width];
}
