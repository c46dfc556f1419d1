import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif

/// C memory for one message tree that protobuf-c packs: every allocation is recorded and
/// freed together once the bytes are out.
final class CArena {
    private var allocations: [UnsafeMutableRawPointer] = []
    private var strings: [UnsafeMutablePointer<CChar>] = []

    func message<T>(_: T.Type, _ initialize: (UnsafeMutablePointer<T>) -> Void) -> UnsafeMutablePointer<T> {
        let pointer = UnsafeMutablePointer<T>.allocate(capacity: 1)
        allocations.append(UnsafeMutableRawPointer(pointer))
        initialize(pointer)
        return pointer
    }

    /// An array of `count` null pointers to messages of type T (nil when empty).
    func pointers<T>(to _: T.Type, count: Int) -> UnsafeMutablePointer<UnsafeMutablePointer<T>?>? {
        guard count > 0 else { return nil }
        let array = UnsafeMutablePointer<UnsafeMutablePointer<T>?>.allocate(capacity: count)
        array.initialize(repeating: nil, count: count)
        allocations.append(UnsafeMutableRawPointer(array))
        return array
    }

    /// One message per element, each set by `fill`, in an array of pointers.
    func pointers<Element, T>(_ elements: [Element], _ fill: (Element, UnsafeMutablePointer<T>) -> Void) -> UnsafeMutablePointer<UnsafeMutablePointer<T>?>? {
        let array = pointers(to: T.self, count: elements.count)
        for (k, element) in elements.enumerated() {
            array?[k] = message(T.self) { fill(element, $0) }
        }
        return array
    }

    func string(_ text: String) -> UnsafeMutablePointer<CChar> {
        let copy = strdup(text)! // strdup fails only when malloc does
        strings.append(copy)
        return copy
    }

    func freeAll() {
        for allocation in allocations { allocation.deallocate() }
        for string in strings { free(string) }
        allocations.removeAll()
        strings.removeAll()
    }
}
